//! One call of a hook as sent and answered, recorded for a dry run (`bosun hook test`) and
//! printed without credentials.

use std::time::Duration;

use serde_json::Value;

/// One call of a hook, as sent and answered.
#[derive(Debug, Clone)]
pub struct HookExchange {
    /// `sync`, `finalize` or `customize`.
    pub hook: &'static str,
    /// Where it was sent (without credentials).
    pub url: String,
    /// The request body.
    pub request: Value,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// The response body, if it was JSON.
    pub response: Option<Value>,
    /// How long the call took.
    pub duration: Duration,
    /// The credentials it carried, as they may be printed (where from, never what).
    pub credentials: Vec<String>,
}
