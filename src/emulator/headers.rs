//! Wire constants of the Lambda Runtime and Extensions APIs (runtime-api.md §1-§2).

pub const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
pub const DEADLINE_MS: &str = "lambda-runtime-deadline-ms";
pub const FUNCTION_ARN: &str = "lambda-runtime-invoked-function-arn";
pub const TRACE_ID: &str = "lambda-runtime-trace-id";
pub const CLIENT_CONTEXT: &str = "lambda-runtime-client-context";
pub const TENANT_ID: &str = "lambda-runtime-aws-tenant-id";
pub const FUNCTION_ERROR_TYPE: &str = "lambda-runtime-function-error-type";
pub const RESPONSE_MODE: &str = "lambda-runtime-function-response-mode";
pub const EXTENSION_NAME: &str = "lambda-extension-name";
pub const EXTENSION_ID: &str = "lambda-extension-identifier";
pub const EXTENSION_EVENT_ID: &str = "lambda-extension-event-identifier";

/// The largest response body the runtime may post: 6 MiB + 100 bytes, as the RIE and Lambda.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 + 100;

/// Error bodies of the emulator itself: JSON with a trailing newline, as Go's json.Encoder writes.
pub fn error_body(error_type: &str, message: &str) -> String {
    format!(
        "{}\n",
        serde_json::json!({"errorMessage": message, "errorType": error_type})
    )
}

pub const STATUS_OK: &str = "{\"status\":\"OK\"}\n";
