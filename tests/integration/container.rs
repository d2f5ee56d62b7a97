//! The AzureML runtime image (the Dockerfile), built and run for real.
//!
//! `scripts/build-image.sh --binary` builds the Dockerfile's runtime stages with buildah, with
//! no daemon and no registry: the Debian base is made with debootstrap, and it and the layers
//! are cached in ~/.cache/evalr/container, so only the first run takes minutes; this build's
//! evalr binary and the installed default model stand in for the builder and model stages.
//! Inside the image, as the image's user, the tests run what AzureML runs: the command lines of
//! azureml/components/*.yml (read from the YAML; `${{inputs.*}}`/`${{outputs.*}}` bound to
//! folders mounted where AzureML mounts them, `$[[...]]` kept only when its inputs are given),
//! with `bash -c` in an empty job working directory, under the environment AzureML sets (its
//! MLflow variables point at a real `mlflow server` on 127.0.0.1).
//!
//! (`cargo test --test integration container::`.) Skipped, with a note, where buildah is not installed, unless EVALR_REQUIRE_CONTAINER is set
//! (CI sets it: scripts/setup.sh --test installs buildah and debootstrap). Needs root or
//! passwordless sudo, and the default model (scripts/install-default-model.sh).

use crate::common::mlflow_server;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use mlflow_server::MlflowServer;
use mlflow_server::reqwest::{get_json, post_json};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Secret values the tests hand to the build and the jobs; none may end up in the image or in
/// a result folder.
const BUILD_SECRET: &str = "canary-build-key-5f1e0c7a9b";
const JOB_TOKEN: &str = "canary-job-token-8d2b4e6f10";

/// The user the Dockerfile creates and runs as.
const IMAGE_USER: &str = "evalr";
const IMAGE_UID: u32 = 1000;

/// `sudo -n PROGRAM` unless the tests already run as root (debootstrap and buildah need root).
fn privileged(program: &str) -> Command {
    static ROOT: OnceLock<bool> = OnceLock::new();
    let root = *ROOT.get_or_init(|| {
        let out = Command::new("id").arg("-u").output().expect("run id -u");
        String::from_utf8_lossy(&out.stdout).trim() == "0"
    });
    if root {
        Command::new(program)
    } else {
        let mut command = Command::new("sudo");
        command.args(["-n", program]);
        command
    }
}

fn stderr_tail(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The built image, in the build script's private image store.
struct Image {
    name: String,
    root: String,
    runroot: String,
}

/// Built once per test process and shared; `None` (after a note) where buildah is missing.
fn image() -> Option<&'static Image> {
    static IMAGE: OnceLock<Option<Image>> = OnceLock::new();
    IMAGE.get_or_init(build_image).as_ref()
}

fn build_image() -> Option<Image> {
    let installed = Command::new("buildah")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var_os("EVALR_REQUIRE_CONTAINER").is_none(),
            "EVALR_REQUIRE_CONTAINER is set but buildah is not installed: scripts/setup.sh --test installs it (apt-get install buildah debootstrap)"
        );
        eprintln!(
            "\n*** SKIPPED: buildah is not installed, so the container image is not built or run (scripts/setup.sh --test installs it) ***\n"
        );
        return None;
    }
    // One tag per checkout: a new build replaces the last one of the same checkout (the
    // script removes the image it untags) and leaves other checkouts' builds alone.
    let checkout = hex::encode(&Sha256::digest(REPO.as_bytes())[..6]);
    let tag = format!("localhost/evalr-test:{checkout}");
    let output = Command::new(Path::new(REPO).join("scripts/build-image.sh"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_evalr"))
        .args(["--tag", &tag])
        // As on a developer's machine: secrets in the environment of the build, which must
        // not reach the image.
        .env("AZURE_OPENAI_API_KEY", BUILD_SECRET)
        .env("HF_TOKEN", BUILD_SECRET)
        .output()
        .expect("run scripts/build-image.sh");
    assert!(
        output.status.success(),
        "scripts/build-image.sh failed ({}):\n{}",
        output.status,
        stderr_tail(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("build-image.sh printed no `{name}` line:\n{stdout}"))
            .to_string()
    };
    Some(Image {
        name: field("image: "),
        root: field("root: "),
        runroot: field("runroot: "),
    })
}

impl Image {
    fn buildah(&self) -> Command {
        let mut command = privileged("buildah");
        command.args(["--root", &self.root, "--runroot", &self.runroot]);
        command
    }

    fn buildah_ok(&self, args: &[&str]) -> String {
        let output = self.buildah().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "buildah {args:?}: {}",
            stderr_tail(&output)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The image's OCI configuration and history.
    fn oci(&self) -> Value {
        let text = self.buildah_ok(&["inspect", "--type", "image", &self.name]);
        serde_json::from_str::<Value>(&text).unwrap()["OCIv1"].clone()
    }

    /// A fresh working container of the image, removed on drop.
    fn container(&self) -> Container<'_> {
        let id = self.buildah_ok(&["from", "--pull=never", &self.name]);
        Container {
            image: self,
            id: id.trim().to_string(),
        }
    }
}

struct Container<'a> {
    image: &'a Image,
    id: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.image.buildah().args(["rm", &self.id]).output();
    }
}

/// How a command runs in the container; the user is the image's own unless `user` is set.
#[derive(Default)]
struct Run {
    /// `host:container[:ro]` bind mounts.
    volumes: Vec<String>,
    env: Vec<(String, String)>,
    workdir: Option<String>,
}

impl Container<'_> {
    fn run(&self, how: &Run, argv: &[&str]) -> Output {
        let mut command = self.image.buildah();
        command.args(["run", "--isolation", "chroot", "--network", "host"]);
        for volume in &how.volumes {
            command.args(["--volume", volume]);
        }
        for (name, value) in &how.env {
            command.args(["--env", &format!("{name}={value}")]);
        }
        if let Some(dir) = &how.workdir {
            command.args(["--workingdir", dir]);
        }
        command.arg(&self.id).arg("--").args(argv);
        command.output().unwrap()
    }

    /// The root filesystem, mounted until the container is dropped.
    fn mount(&self) -> PathBuf {
        PathBuf::from(self.image.buildah_ok(&["mount", &self.id]).trim())
    }
}

/// One AzureML command job: its inputs and outputs mounted where AzureML mounts them
/// (/mnt/azureml/cr/j/<job>/cap/data-capability/wd/...), read-only inputs, writable outputs,
/// an empty working directory (.../exe/wd), and the values bound into its command line.
struct Job {
    id: String,
    host: tempfile::TempDir,
    bindings: BTreeMap<String, String>,
    run: Run,
}

impl Job {
    fn new(id: &str) -> Job {
        let host = tempfile::tempdir().unwrap();
        let mut job = Job {
            id: id.to_string(),
            host,
            bindings: BTreeMap::new(),
            run: Run::default(),
        };
        let wd = job.host.path().join("wd");
        fs::create_dir(&wd).unwrap();
        open_to_all(&wd);
        let cwd = format!("/mnt/azureml/cr/j/{id}/exe/wd");
        job.run.volumes.push(format!("{}:{cwd}", wd.display()));
        job.run.workdir = Some(cwd.clone());
        job.env("AZUREML_CR_EXECUTION_WORKING_DIR_PATH", &cwd);
        job
    }

    fn data_path(&self, name: &str) -> String {
        format!(
            "/mnt/azureml/cr/j/{}/cap/data-capability/wd/{name}",
            self.id
        )
    }

    fn env(&mut self, name: &str, value: &str) {
        self.run.env.push((name.to_string(), value.to_string()));
    }

    /// A `uri_file` input: the file inside a read-only folder of its own.
    fn input_file(&mut self, name: &str, file: &Path) {
        let folder = self.host.path().join(format!("INPUT_{name}"));
        fs::create_dir(&folder).unwrap();
        let file_name = file.file_name().unwrap().to_str().unwrap();
        fs::copy(file, folder.join(file_name)).unwrap();
        let mount = self.data_path(&format!("INPUT_{name}"));
        self.run
            .volumes
            .push(format!("{}:{mount}:ro", folder.display()));
        let path = format!("{mount}/{file_name}");
        self.env(&format!("AZURE_ML_INPUT_{name}"), &path);
        self.bindings.insert(format!("inputs.{name}"), path);
    }

    /// A `uri_folder` input, mounted read-only.
    fn input_folder(&mut self, name: &str, folder: &Path) {
        let mount = self.data_path(&format!("INPUT_{name}"));
        self.run
            .volumes
            .push(format!("{}:{mount}:ro", folder.display()));
        self.env(&format!("AZURE_ML_INPUT_{name}"), &mount);
        self.bindings.insert(format!("inputs.{name}"), mount);
    }

    /// A literal input (string, number).
    fn input_value(&mut self, name: &str, value: &str) {
        self.bindings
            .insert(format!("inputs.{name}"), value.to_string());
    }

    /// A `uri_folder` output, writable by the job's user; its host folder.
    fn output_folder(&mut self, name: &str) -> PathBuf {
        let folder = self.host.path().join("outputs").join(name);
        fs::create_dir_all(&folder).unwrap();
        open_to_all(&folder);
        let mount = self.data_path(name);
        self.run
            .volumes
            .push(format!("{}:{mount}", folder.display()));
        self.env(&format!("AZURE_ML_OUTPUT_{name}"), &mount);
        self.bindings.insert(format!("outputs.{name}"), mount);
        folder
    }

    /// The job-wide environment AzureML sets, with MLflow pointed at `mlflow` when given
    /// (tracking URI, the job's run and experiment, the tracking token).
    fn azureml_env(&mut self, mlflow: Option<(&str, &str, &str)>) {
        let id = self.id.clone();
        self.env("AZUREML_RUN_ID", &id);
        self.env(
            "AZUREML_ARM_SUBSCRIPTION",
            "00000000-0000-0000-0000-000000000000",
        );
        self.env("AZUREML_ARM_RESOURCEGROUP", "evalr-rg");
        self.env("AZUREML_ARM_WORKSPACE_NAME", "evalr-ws");
        self.env("AZUREML_ARM_PROJECT_NAME", "evalr");
        self.env("AZUREML_RUN_TOKEN", JOB_TOKEN);
        if let Some((uri, experiment_id, run_id)) = mlflow {
            self.env("MLFLOW_TRACKING_URI", uri);
            self.env("MLFLOW_EXPERIMENT_ID", experiment_id);
            self.env("MLFLOW_EXPERIMENT_NAME", "evalr");
            self.env("MLFLOW_RUN_ID", run_id);
            self.env("MLFLOW_TRACKING_TOKEN", JOB_TOKEN);
        }
    }

    /// Runs a component's command line, bound to this job, with `bash -c` in the image.
    fn run_component(&self, image: &Image, component: &Path) -> (String, Output) {
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&fs::read_to_string(component).unwrap()).unwrap();
        let command = yaml["command"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no command", component.display()));
        let bound = bind_command(command, &self.bindings)
            .unwrap_or_else(|e| panic!("{}: {e}", component.display()));
        let output = image.container().run(&self.run, &["bash", "-c", &bound]);
        (bound, output)
    }
}

/// Everyone may write: AzureML's output mounts are writable by the job's user, whatever its
/// uid (the tests' temporary folders belong to the user running the tests).
fn open_to_all(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
}

/// A component's command line with its `${{inputs.X}}`/`${{outputs.X}}` replaced, as AzureML
/// does: a `$[[...]]` part is kept (without its brackets) when every input it names is given,
/// and dropped otherwise; any other expression must be bound.
fn bind_command(command: &str, bindings: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = command;
    while let Some(start) = rest.find("$[[") {
        out.push_str(&substitute(&rest[..start], bindings)?);
        let end = rest[start..]
            .find("]]")
            .ok_or_else(|| format!("unclosed $[[ in {command:?}"))?;
        let optional = &rest[start + 3..start + end];
        if let Ok(part) = substitute(optional, bindings) {
            out.push_str(&part);
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(&substitute(rest, bindings)?);
    // Dropped optional parts leave runs of spaces; AzureML's command line has single ones.
    Ok(out.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn substitute(text: &str, bindings: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| format!("unclosed ${{{{ in {text:?}"))?;
        let name = rest[start + 3..start + end].trim();
        let value = bindings
            .get(name)
            .ok_or_else(|| format!("{name} is not bound"))?;
        out.push_str(value);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn yaml(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(
        &fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// Files under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let bytes = fs::read(entry.path()).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(entry.path());
                }
            }
        }
    }
    found
}

/// Every file under `dir` belongs to `uid`.
fn assert_owned_by(dir: &Path, uid: u32) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        assert_eq!(
            entry.metadata().unwrap().uid(),
            uid,
            "{} is not owned by uid {uid}",
            entry.path().display()
        );
        if entry.file_type().unwrap().is_dir() {
            assert_owned_by(&entry.path(), uid);
        }
    }
}

/// A run and an experiment on the MLflow server, as AzureML creates one run per job before
/// the job starts: (experiment id, run id).
fn mlflow_job_run(server: &MlflowServer, name: &str) -> (String, String) {
    let api = format!("{}/api/2.0/mlflow", server.base);
    let experiment = get_json(&format!(
        "{api}/experiments/get-by-name?experiment_name=evalr"
    ));
    let experiment_id = match experiment["experiment"]["experiment_id"].as_str() {
        Some(id) => id.to_string(),
        None => post_json(
            &format!("{api}/experiments/create"),
            json!({"name": "evalr"}),
        )["experiment_id"]
            .as_str()
            .unwrap()
            .to_string(),
    };
    let run = post_json(
        &format!("{api}/runs/create"),
        json!({"experiment_id": experiment_id, "run_name": name, "start_time": 1}),
    );
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    (experiment_id, run_id)
}

/// A metric of the run (summary.json's numbers are logged under their dotted paths).
fn mlflow_metric(server: &MlflowServer, run_id: &str, key: &str) -> Option<f64> {
    let run = get_json(&format!(
        "{}/api/2.0/mlflow/runs/get?run_id={run_id}",
        server.base
    ));
    let metrics = run["run"]["data"]["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let value = metrics
        .iter()
        .find(|m| m["key"] == key)
        .and_then(|m| m["value"].as_f64());
    if value.is_none() {
        eprintln!("run {run_id} has no metric {key}; it has {metrics:?}");
    }
    value
}

#[test]
fn the_pipeline_steps_run_in_the_image_as_azureml_runs_them() {
    let Some(image) = image() else { return };
    let mlflow = MlflowServer::start();
    let azureml = Path::new(REPO).join("azureml");
    let pipeline = yaml(&azureml.join("pipeline.yml"));
    // The pipeline's own program and dataset; the embedded model instead of its remote
    // profile, and 3 rows.
    let input_path = |name: &str| {
        azureml.join(
            pipeline["inputs"][name]["path"]
                .as_str()
                .unwrap_or_else(|| panic!("pipeline.yml has no inputs.{name}.path")),
        )
    };
    let component = |job: &str| {
        azureml.join(
            pipeline["jobs"][job]["component"]
                .as_str()
                .unwrap_or_else(|| panic!("pipeline.yml has no jobs.{job}.component")),
        )
    };

    // Step 1: run.
    let mut run = Job::new("evalr-run-job");
    run.input_file("program", &input_path("program"));
    run.input_file("dataset", &input_path("dataset"));
    run.input_value("model", "local");
    run.input_value("limit", "3");
    let results = run.output_folder("results");
    let run_mlflow = mlflow.as_ref().map(|s| mlflow_job_run(s, "run"));
    let uri = mlflow.as_ref().map(|s| s.base.clone());
    run.azureml_env(
        run_mlflow
            .as_ref()
            .map(|(e, r)| (uri.as_deref().unwrap(), e.as_str(), r.as_str())),
    );
    let (command, output) = run.run_component(image, &component("run"));
    assert!(
        output.status.success(),
        "{command}\n{}",
        stderr_tail(&output)
    );
    // The optional inputs not given are gone from the command line, the given ones are there.
    assert!(command.starts_with("evalr run --program /mnt/azureml/cr/j/evalr-run-job/cap/data-capability/wd/INPUT_program/"), "{command}");
    assert!(command.contains(" --model local --limit 3"), "{command}");
    assert!(!command.contains("--config"), "{command}");

    let outputs = read_jsonl(&results.join("outputs.jsonl"));
    assert_eq!(outputs.len(), 3, "{}", stderr_tail(&output));
    for record in &outputs {
        assert!(
            record["model"]
                .as_str()
                .unwrap()
                .starts_with("local:gemma-3-270m-q4_k_m.gguf@"),
            "{record}"
        );
        assert!(
            record["outcome"] == "correct" || record["outcome"] == "wrong",
            "{record}"
        );
    }
    let summary = read_json(&results.join("summary.json"));
    assert_eq!(summary["rows"]["outputs"], 3);
    for file in ["run.json", "report.md"] {
        assert!(results.join(file).is_file(), "{file} missing");
    }
    // Written by the image's non-root user, and without the job's secrets.
    assert_owned_by(&results, IMAGE_UID);
    assert_eq!(
        files_containing(&results, JOB_TOKEN.as_bytes()),
        Vec::<PathBuf>::new()
    );
    if let (Some(server), Some((_, run_id))) = (&mlflow, &run_mlflow) {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("logged") || stdout.contains("logged"),
            "{stderr}"
        );
        assert_eq!(
            mlflow_metric(server, run_id, "accuracy.micro.value"),
            summary["accuracy"]["micro"]["value"].as_f64()
        );
    }

    // Step 2: score, on the run's output as its (read-only) input.
    let mut score = Job::new("evalr-score-job");
    score.input_folder("results", &results);
    let scored = score.output_folder("scored");
    let score_mlflow = mlflow.as_ref().map(|s| mlflow_job_run(s, "score"));
    score.azureml_env(
        score_mlflow
            .as_ref()
            .map(|(e, r)| (uri.as_deref().unwrap(), e.as_str(), r.as_str())),
    );
    let (command, output) = score.run_component(image, &component("score"));
    assert!(
        output.status.success(),
        "{command}\n{}",
        stderr_tail(&output)
    );
    for file in [
        "outputs.jsonl",
        "run.json",
        "summary.json",
        "report.md",
        "outputs.parquet",
    ] {
        assert!(
            scored.join(file).is_file(),
            "{file} missing from the scored output"
        );
    }
    assert_eq!(
        read_json(&scored.join("summary.json"))["rows"]["outputs"],
        3
    );
    assert_owned_by(&scored, IMAGE_UID);
    if let (Some(server), Some((_, run_id))) = (&mlflow, &score_mlflow) {
        assert_eq!(
            mlflow_metric(server, run_id, "accuracy.micro.value"),
            summary["accuracy"]["micro"]["value"].as_f64()
        );
    }
}

/// The repository's programs, which the image carries and `programs list` must show.
fn repository_programs() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(Path::new(REPO).join("programs"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".prompty").map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(!names.is_empty());
    names
}

#[test]
fn the_entrypoint_answers_version_and_programs_list_with_no_repository_around() {
    let Some(image) = image() else { return };
    let config = &image.oci()["config"];
    let entrypoint: Vec<String> = serde_json::from_value(config["Entrypoint"].clone()).unwrap();
    assert_eq!(entrypoint, ["evalr"]);
    // As `docker run IMAGE ...` runs it (the image's working directory), and as an AzureML
    // job's command runs it (an empty job folder).
    let job = Job::new("evalr-entrypoint-job");
    for how in [Run::default(), job.run] {
        let container = image.container();
        let argv = |args: &[&'static str]| -> Vec<String> {
            entrypoint
                .iter()
                .cloned()
                .chain(args.iter().map(|a| a.to_string()))
                .collect()
        };
        let version = argv(&["--version"]);
        let output = container.run(
            &how,
            &version.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert!(output.status.success(), "{}", stderr_tail(&output));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("evalr {}\n", env!("CARGO_PKG_VERSION"))
        );
        let list = argv(&["programs", "list"]);
        let output = container.run(&how, &list.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(output.status.success(), "{}", stderr_tail(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        for name in repository_programs() {
            assert!(
                stdout
                    .lines()
                    .any(|line| line.split_whitespace().next() == Some(&name)),
                "{name} missing from `evalr programs list`:\n{stdout}"
            );
        }
    }
}

/// Where a secret could hide in an image's files: (path, reason) for every finding.
fn secrets_in_tree(root: &Path, values: &[&str]) -> Vec<(PathBuf, String)> {
    // Credential files of the tools evalr's users have (Azure CLI, Docker, git, Hugging Face,
    // SSH, netrc) in a home folder, and dotenv files and evalr's profiles file (it may name
    // keys) anywhere.
    const IN_HOMES: &[&str] = &[
        ".azure",
        ".docker",
        ".git-credentials",
        ".netrc",
        ".ssh",
        "token",
    ];
    const ANYWHERE: &[&str] = &[".env", "evalr.toml"];
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let in_home =
                path.starts_with(root.join("home")) || path.starts_with(root.join("root"));
            if ANYWHERE.contains(&name.as_str()) || in_home && IN_HOMES.contains(&name.as_str()) {
                found.push((path.clone(), "a credentials file".into()));
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    // The contents, with grep (fast on the 253 MB model, where a debug build is not).
    let grep = |needle: &str| -> Vec<PathBuf> {
        let output = privileged("grep")
            .args(["-r", "-l", "-a", "-F", "-e", needle])
            .arg(root)
            .output()
            .expect("run grep");
        // 0: found, 1: not found; 2 is an error unless files merely vanished or were unreadable.
        assert!(
            output.status.code() != Some(2) || !output.stdout.is_empty(),
            "grep: {}",
            stderr_tail(&output)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(PathBuf::from)
            .collect()
    };
    // Private keys in PEM files; a binary's PEM parser holds the marker as a literal.
    for path in grep("PRIVATE KEY-----") {
        let mut head = [0u8; 4];
        let elf = fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok()
            && head == *b"\x7fELF";
        if !elf {
            found.push((path, "a PEM private key".into()));
        }
    }
    for value in values {
        for path in grep(value) {
            found.push((path, format!("the secret value {value:?}")));
        }
    }
    found
}

#[test]
fn the_secret_scan_finds_planted_credentials() {
    // The scan below can fail: planted in a tree shaped like an image, each kind is found.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("home/evalr/.azure")).unwrap();
    fs::write(root.join("home/evalr/.azure/msal_token_cache.json"), "{}").unwrap();
    fs::create_dir_all(root.join("etc/app")).unwrap();
    fs::write(
        root.join("etc/app/key.pem"),
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/app/settings"),
        format!("key={BUILD_SECRET}\n"),
    )
    .unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(
        root.join("usr/bin/tool"),
        b"\x7fELF...-----BEGIN PRIVATE KEY-----",
    )
    .unwrap();
    let mut found: Vec<String> = secrets_in_tree(root, &[BUILD_SECRET])
        .into_iter()
        .map(|(path, why)| format!("{} {why}", path.strip_prefix(root).unwrap().display()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "etc/app/key.pem a PEM private key",
            &format!("etc/app/settings the secret value {BUILD_SECRET:?}"),
            "home/evalr/.azure a credentials file",
        ]
    );
}

#[test]
fn the_image_runs_as_a_non_root_user_with_no_secrets_baked_in() {
    let Some(image) = image() else { return };
    let oci = image.oci();
    let config = &oci["config"];
    assert_eq!(config["User"], IMAGE_USER);
    let container = image.container();
    let output = container.run(&Run::default(), &["id", "-u"]);
    assert!(output.status.success(), "{}", stderr_tail(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        IMAGE_UID.to_string()
    );

    // The configuration: only these variables, and no secret in labels or in the history
    // (build arguments show up there).
    let mut env: Vec<String> = serde_json::from_value::<Vec<String>>(config["Env"].clone())
        .unwrap()
        .into_iter()
        .map(|e| e.split('=').next().unwrap().to_string())
        .collect();
    env.sort();
    assert_eq!(env, ["EVALR_MODEL_DIR", "EVALR_PROGRAMS_DIR", "PATH"]);
    let metadata = format!("{} {}", oci["config"], oci["history"]);
    assert!(!metadata.contains(BUILD_SECRET), "{metadata}");
    for word in ["KEY=", "TOKEN=", "SECRET", "PASSWORD"] {
        assert!(
            !metadata.to_uppercase().contains(word),
            "{word} in {metadata}"
        );
    }

    // The files: no credentials file, private key or secret of the build's environment.
    let root = container.mount();
    let found = secrets_in_tree(&root, &[BUILD_SECRET]);
    assert!(found.is_empty(), "{found:?}");
    // What the image is for is there: the binary, the model, the programs.
    assert!(root.join("usr/local/bin/evalr").is_file());
    assert!(
        root.join("usr/share/evalr/models/gemma-3-270m-q4_k_m.gguf")
            .is_file()
    );
    for name in repository_programs() {
        assert!(
            root.join(format!("usr/share/evalr/programs/{name}.prompty"))
                .is_file()
        );
    }
}
