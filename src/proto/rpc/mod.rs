//! Remote procedure calls on one shard. `table` holds all RPC state; `caller` and `callee`
//! are the two ends of a call (each on its own session's home shard), `registration` the
//! callee's REGISTER/UNREGISTER, `teardown` what a session's end means for RPC. The owner
//! side of registrations (IDs, callee lists, barriers) is in `control`.

mod callee;
mod caller;
mod registration;
mod table;
mod teardown;

pub(crate) use callee::{on_cancel_invoke, on_chunk, on_invocation_error, on_yield, start_invocation};
pub(crate) use caller::{
    CallReq, cancel_router_call, on_bounced, on_call, on_call_timeout, on_cancel, on_yielded, router_call,
};
pub(crate) use registration::{on_register, on_register_done, on_unregister, on_unregister_done, revoke};
pub(crate) use table::{Calls, Failure};
pub(crate) use teardown::on_session_end;
