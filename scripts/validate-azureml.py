#!/usr/bin/env python3
"""Validate every AzureML YAML under azureml/ with the real azure-ai-ml SDK, offline.

For each file: load it with load_environment / load_component / load_job (by its $schema),
run the SDK's local validation (data bindings, input/output names, types), check that local
`path:` references exist, and, with --evalr BINARY, that every `evalr SUB --flag` in a
command line is a flag `evalr SUB --help` knows. No workspace is needed.

Exit code 0 when every file passes, 1 otherwise (each failure printed as FILE: reason),
2 when azure-ai-ml is not installed.

    python scripts/validate-azureml.py [--evalr target/debug/evalr] [ROOT]
"""

import argparse
import pathlib
import re
import subprocess
import sys


def kind_of(doc):
    schema = str(doc.get("$schema", ""))
    if "environment.schema" in schema:
        return "environment"
    if "Component.schema" in schema:
        return "component"
    if "Job.schema" in schema:
        return "job"
    return None


def local_paths(node, base):
    """Yield (key path, resolved path) of local `path:` values (not azureml:, not URLs)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("path", "component") and isinstance(value, str):
                if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value) and "${{" not in value:
                    yield key, (base / value)
            else:
                yield from local_paths(value, base)
    elif isinstance(node, list):
        for item in node:
            yield from local_paths(item, base)


def commands(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "command" and isinstance(value, str):
                yield value
            else:
                yield from commands(value)
    elif isinstance(node, list):
        for item in node:
            yield from commands(item)


def evalr_calls(command):
    """[(subcommand, [--flags])] for each `evalr SUB ...` in a command line."""
    calls = []
    tokens = command.replace("$[[", " ").replace("]]", " ").split()
    current = None
    for token in tokens:
        if token == "evalr":
            current = None
            calls.append([None, []])
            continue
        if not calls or token in ("&&", ";", "||", "then", "fi", "if"):
            if token in ("&&", ";", "||"):
                current = None
            continue
        call = calls[-1]
        if call[0] is None and not token.startswith("-") and current is None:
            call[0] = token
            current = call
        elif current is call and token.startswith("--"):
            call[1].append(token.split("=", 1)[0])
    return [(sub, flags) for sub, flags in calls if sub]


def check_flags(evalr, command, help_cache, notes):
    errors = []
    for sub, flags in evalr_calls(command):
        if sub not in help_cache:
            run = subprocess.run([evalr, sub, "--help"], capture_output=True, text=True)
            help_cache[sub] = run.stdout if run.returncode == 0 else None
        text = help_cache[sub]
        if text is None:
            notes.add(f"this evalr has no `{sub}` command: its flags were not checked")
            continue
        for flag in flags:
            if not re.search(re.escape(flag) + r"\b", text):
                errors.append(f"`evalr {sub}` has no flag {flag}")
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="azureml", help="folder of AzureML YAMLs")
    parser.add_argument("--evalr", help="evalr binary to check command-line flags against")
    args = parser.parse_args()

    try:
        import yaml
        from azure.ai.ml import load_component, load_environment, load_job
    except ImportError as error:
        print(f"azure-ai-ml is not installed ({error}): pip install azure-ai-ml", file=sys.stderr)
        return 2

    root = pathlib.Path(args.root)
    files = sorted(p for p in root.rglob("*") if p.suffix in (".yml", ".yaml"))
    if not files:
        print(f"{root}: no YAML files", file=sys.stderr)
        return 1
    loaders = {"environment": load_environment, "component": load_component, "job": load_job}
    failures = 0
    help_cache = {}
    notes = set()
    for path in files:
        problems = []
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            problems.append(f"not YAML: {error}")
            doc = None
        kind = kind_of(doc) if isinstance(doc, dict) else None
        if doc is not None and kind is None:
            problems.append("no $schema naming an environment, component or job")
        if kind:
            try:
                entity = loaders[kind](str(path))
                validate = getattr(entity, "_validate", None)
                if validate is not None:
                    result = validate()
                    if not result.passed:
                        for where, message in result.error_messages.items():
                            problems.append(f"{where}: {message}")
            except Exception as error:  # the SDK raises many types; all mean invalid
                problems.append(f"{type(error).__name__}: {str(error).strip()}")
            for key, target in local_paths(doc, path.parent):
                if not target.exists():
                    problems.append(f"{key}: {target} does not exist")
            if args.evalr:
                for command in commands(doc):
                    problems.extend(check_flags(args.evalr, command, help_cache, notes))
        if problems:
            failures += 1
            for problem in problems:
                print(f"FAIL {path}: {problem}")
        else:
            print(f"ok   {path} ({kind})")
    for note in sorted(notes):
        print(f"note: {note}")
    print(f"{len(files) - failures} of {len(files)} files valid")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
