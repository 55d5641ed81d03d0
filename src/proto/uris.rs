//! Every error and close URI the router emits, in one place. Nothing else in `proto/`
//! writes a `wamp.error.*`, `wamp.close.*` or `shardbar.*` URI as a literal.

pub const PROTOCOL_VIOLATION: &str = "wamp.error.protocol_violation";
pub const NO_SUCH_REALM: &str = "wamp.error.no_such_realm";
pub const NO_AUTH_METHOD: &str = "wamp.error.no_matching_auth_method";
pub const INVALID_URI: &str = "wamp.error.invalid_uri";
pub const INVALID_ARGUMENT: &str = "wamp.error.invalid_argument";
pub const NO_SUCH_SUBSCRIPTION: &str = "wamp.error.no_such_subscription";
pub const NO_SUCH_REGISTRATION: &str = "wamp.error.no_such_registration";
pub const NO_SUCH_PROCEDURE: &str = "wamp.error.no_such_procedure";
pub const PROCEDURE_ALREADY_EXISTS: &str = "wamp.error.procedure_already_exists";
pub const NO_AVAILABLE_CALLEE: &str = "wamp.error.no_available_callee";
pub const UNAVAILABLE: &str = "wamp.error.unavailable";
pub const CANCELED: &str = "wamp.error.canceled";
pub const PAYLOAD_SIZE_EXCEEDED: &str = "wamp.error.payload_size_exceeded";
pub const GOODBYE_AND_OUT: &str = "wamp.close.goodbye_and_out";
pub const SYSTEM_SHUTDOWN: &str = "wamp.close.system_shutdown";
pub const LIMIT_EXCEEDED: &str = "shardbar.error.limit_exceeded";
pub const SLOW_CONSUMER: &str = "shardbar.close.slow_consumer";
