//! Every error and close URI the router emits, in one place. Nothing else in `proto/`
//! writes a `wamp.error.*`, `wamp.close.*` or `shardbar.*` URI as a literal.

pub(crate) const PROTOCOL_VIOLATION: &str = "wamp.error.protocol_violation";
pub(crate) const NO_SUCH_REALM: &str = "wamp.error.no_such_realm";
/// Autobahn's and Crossbar's spelling (the spec says `wamp.error.no_matching_auth_method`;
/// clients match Autobahn's `ApplicationError.NO_AUTH_METHOD`).
pub(crate) const NO_AUTH_METHOD: &str = "wamp.error.no_auth_method";
pub(crate) const NOT_AUTHORIZED: &str = "wamp.error.not_authorized";
pub(crate) const AUTHENTICATION_FAILED: &str = "wamp.error.authentication_failed";
pub(crate) const INVALID_URI: &str = "wamp.error.invalid_uri";
pub(crate) const INVALID_ARGUMENT: &str = "wamp.error.invalid_argument";
pub(crate) const NO_SUCH_SUBSCRIPTION: &str = "wamp.error.no_such_subscription";
pub(crate) const HISTORY_UNAVAILABLE: &str = "wamp.error.history_unavailable";
pub(crate) const NO_SUCH_REGISTRATION: &str = "wamp.error.no_such_registration";
pub(crate) const NO_SUCH_PROCEDURE: &str = "wamp.error.no_such_procedure";
pub(crate) const PROCEDURE_ALREADY_EXISTS: &str = "wamp.error.procedure_already_exists";
pub(crate) const NO_AVAILABLE_CALLEE: &str = "wamp.error.no_available_callee";
pub(crate) const UNAVAILABLE: &str = "wamp.error.unavailable";
pub(crate) const CANCELED: &str = "wamp.error.canceled";
pub(crate) const TIMEOUT: &str = "wamp.error.timeout";
pub(crate) const FEATURE_NOT_SUPPORTED: &str = "wamp.error.feature_not_supported";
pub(crate) const PAYLOAD_SIZE_EXCEEDED: &str = "wamp.error.payload_size_exceeded";
pub(crate) const NO_SUCH_SESSION: &str = "wamp.error.no_such_session";
/// Crossbar's URI for a refused testament (bad scope, no room).
pub(crate) const TESTAMENT_ERROR: &str = "wamp.error.testament_error";
pub(crate) const CLOSE_KILLED: &str = "wamp.close.killed";
pub(crate) const GOODBYE_AND_OUT: &str = "wamp.close.goodbye_and_out";
pub(crate) const SYSTEM_SHUTDOWN: &str = "wamp.close.system_shutdown";
pub(crate) const LIMIT_EXCEEDED: &str = "shardbar.error.limit_exceeded";
pub(crate) const SLOW_CONSUMER: &str = "shardbar.close.slow_consumer";
