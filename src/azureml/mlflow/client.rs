//! The MLflow REST calls evalr makes, with authentication and retries.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Auth, MlflowError, Tracking};

pub(super) struct Client {
    pub http: reqwest::Client,
    pub tracking: Tracking,
}

impl Client {
    pub(super) fn error(&self, endpoint: &str, message: impl Into<String>) -> MlflowError {
        MlflowError::Http {
            base: self.tracking.base.clone(),
            endpoint: endpoint.to_string(),
            message: message.into(),
        }
    }

    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, MlflowError> {
        Ok(match &self.tracking.auth {
            Auth::None => request,
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Bearer { source, scope } => request.bearer_auth(source.token(scope).await?),
        })
    }

    /// Sends, retrying connection failures, 429 and 5xx up to 3 times with a doubling wait
    /// (1 s, 2 s, 4 s): tracking servers restart and throttle, and losing the metrics of a
    /// finished run to a blip would be a waste. `runs/create` is never retried (a retry after
    /// a lost answer would create a second run).
    pub(super) async fn send(
        &self,
        endpoint: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        retry: bool,
    ) -> Result<Value, MlflowError> {
        let mut wait = Duration::from_secs(1);
        let attempts = if retry { 4 } else { 1 };
        let mut last = String::new();
        for attempt in 1..=attempts {
            let request = self.authorize(build(&self.http)).await?;
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        if body.trim().is_empty() {
                            return Ok(Value::Null);
                        }
                        return serde_json::from_str(&body)
                            .map_err(|e| self.error(endpoint, format!("unreadable answer: {e}")));
                    }
                    let snippet: String = body.chars().take(300).collect();
                    last = format!("HTTP {status}: {snippet}");
                    if !(status.as_u16() == 429 || status.is_server_error()) {
                        return Err(self.error(endpoint, last));
                    }
                }
                Err(e) => last = e.without_url().to_string(),
            }
            if attempt < attempts {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        Err(self.error(endpoint, last))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/2.0/{path}", self.tracking.base)
    }

    pub(super) async fn post(
        &self,
        path: &str,
        body: Value,
        retry: bool,
    ) -> Result<Value, MlflowError> {
        let url = self.url(path);
        self.send(path, |http| http.post(&url).json(&body), retry)
            .await
    }

    pub(super) async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, MlflowError> {
        let url = self.url(path);
        self.send(path, |http| http.get(&url).query(query), true)
            .await
    }

    pub(super) async fn experiment_id(&self) -> Result<String, MlflowError> {
        if let Some(id) = &self.tracking.experiment_id {
            return Ok(id.clone());
        }
        let name = self.tracking.experiment_name.as_str();
        let found = self
            .get(
                "mlflow/experiments/get-by-name",
                &[("experiment_name", name)],
            )
            .await;
        let id = match found {
            Ok(v) => v["experiment"]["experiment_id"]
                .as_str()
                .map(str::to_string),
            Err(MlflowError::Http { ref message, .. })
                if message.contains("RESOURCE_DOES_NOT_EXIST") =>
            {
                match self
                    .post("mlflow/experiments/create", json!({"name": name}), false)
                    .await
                {
                    Ok(v) => v["experiment_id"].as_str().map(str::to_string),
                    // Another process created it between our two calls.
                    Err(MlflowError::Http { ref message, .. })
                        if message.contains("RESOURCE_ALREADY_EXISTS") =>
                    {
                        self.get(
                            "mlflow/experiments/get-by-name",
                            &[("experiment_name", name)],
                        )
                        .await?["experiment"]["experiment_id"]
                            .as_str()
                            .map(str::to_string)
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        id.ok_or_else(|| {
            self.error(
                "mlflow/experiments/get-by-name",
                "the answer has no experiment_id",
            )
        })
    }
}
