//! One WAMP session on its home shard: identity, announced features, and its
//! subscriptions (so that when it ends every trace can be removed). Its RPC state is in
//! `rpc::Calls`; the connection-level state machine (ExpectHello → Established → Closing)
//! is in `out::conns` next to the connection.

use crate::proto::{Map, Set};

use std::sync::Arc;

use super::meta::testaments::Testaments;
use super::wire::{Dict, Id, Value};

/// Connection handle: slot index in the low 32 bits, generation in the high 32.
pub type ConnId = u64;

/// The established sessions of one shard, by session ID.
pub(crate) type Sessions = Map<Id, Session>;

/// The roles and features a client announced in HELLO (`Details.roles`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientFeatures {
    pub publisher: bool,
    pub subscriber: bool,
    pub caller: bool,
    pub callee: bool,
    /// Caller accepts progressive results.
    pub caller_progressive_results: bool,
    /// Callee can send progressive results.
    pub callee_progressive_results: bool,
    /// Callee understands INTERRUPT.
    pub callee_call_canceling: bool,
    /// Callee takes progressive call invocations (a streamed CALL).
    pub callee_progressive_invocations: bool,
    /// Subscriber takes UNSUBSCRIBED revocations (request 0).
    pub subscription_revocation: bool,
    /// Callee takes UNREGISTERED revocations (request 0).
    pub registration_revocation: bool,
}

impl ClientFeatures {
    /// Read `HELLO.Details.roles`. A client that announces no roles at all is treated as
    /// having all four (some minimal clients omit them; refusing them helps nobody).
    pub(crate) fn from_hello(details: &Dict) -> ClientFeatures {
        let Some(roles) = details.get("roles").and_then(Value::as_dict) else {
            return ClientFeatures {
                publisher: true,
                subscriber: true,
                caller: true,
                callee: true,
                ..Default::default()
            };
        };
        let feature = |role: &str, name: &str| -> bool {
            roles
                .get(role)
                .and_then(Value::as_dict)
                .and_then(|r| r.get("features"))
                .and_then(Value::as_dict)
                .and_then(|f| f.get(name))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let canceling = |role: &str| feature(role, "call_canceling") || feature(role, "call_cancelling");
        ClientFeatures {
            publisher: roles.contains_key("publisher"),
            subscriber: roles.contains_key("subscriber"),
            caller: roles.contains_key("caller"),
            callee: roles.contains_key("callee"),
            caller_progressive_results: feature("caller", "progressive_call_results"),
            callee_progressive_results: feature("callee", "progressive_call_results"),
            callee_call_canceling: canceling("callee"),
            callee_progressive_invocations: feature("callee", "progressive_call_invocations"),
            subscription_revocation: feature("subscriber", "subscription_revocation"),
            registration_revocation: feature("callee", "registration_revocation"),
        }
    }
}

/// An established session.
#[derive(Debug)]
pub(crate) struct Session {
    pub id: Id,
    pub conn: ConnId,
    pub realm: Arc<str>,
    pub authid: Arc<str>,
    pub authrole: Arc<str>,
    pub features: ClientFeatures,
    /// Subscription IDs this session is a member of.
    pub subscriptions: Set<Id>,
    /// How the session logged in (`wamp.session.get`, `on_join`).
    pub auth: SessionAuth,
    /// SUBSCRIBEs waiting for the owner's barrier (bounded by
    /// `limits::SESSION_PENDING_ROUTE_CHANGES_MAX`).
    pub pending_subscribes: usize,
    /// Events to publish as this session when it ends (`meta::testaments`).
    pub testaments: Testaments,
}

/// How a session logged in, as the meta API reports it.
#[derive(Debug, Default)]
pub(crate) struct SessionAuth {
    pub method: &'static str,
    /// `static` or `dynamic`.
    pub provider: &'static str,
    pub extra: Dict,
}

impl Session {
    pub fn new(
        id: Id,
        conn: ConnId,
        realm: Arc<str>,
        authid: Arc<str>,
        authrole: Arc<str>,
        features: ClientFeatures,
    ) -> Session {
        Session {
            id,
            conn,
            realm,
            authid,
            authrole,
            features,
            subscriptions: Set::default(),
            auth: SessionAuth::default(),
            pending_subscribes: 0,
            testaments: Testaments::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_from_autobahn_hello() {
        let features = Dict::new().with("progressive_call_results", true).with("call_canceling", true);
        let roles = Dict::new()
            .with("caller", Dict::new().with("features", features.clone()))
            .with("callee", Dict::new().with("features", features))
            .with("subscriber", Dict::new());
        let f = ClientFeatures::from_hello(&Dict::new().with("roles", roles));
        assert!(f.caller && f.callee && f.subscriber && !f.publisher);
        assert!(f.caller_progressive_results && f.callee_progressive_results && f.callee_call_canceling);
    }

    #[test]
    fn no_roles_means_all_roles() {
        let f = ClientFeatures::from_hello(&Dict::new());
        assert!(f.caller && f.callee && f.publisher && f.subscriber);
        assert!(!f.callee_call_canceling);
    }
}
