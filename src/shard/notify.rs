//! Tiny single-threaded wake-up primitives for tasks on one shard.
//!
//! glommio tasks on one executor share `Rc` state; these let one task wake another without
//! a channel. Each [`Notify`] has one waiter (the task that owns it), so a waker is stored
//! at most once per wait — important because glommio 0.9 panics when one task's waker is
//! cloned ~32k times.
//!
//! Same-thread only, and no I/O or timers: anything more belongs in glommio.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wake one waiting task. A notification sent while nobody waits is kept (one permit).
#[derive(Default)]
pub(crate) struct Notify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub(crate) fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves once `notify` was called since the last wait.
    pub(crate) fn notified(&self) -> Notified<'_> {
        Notified { n: self }
    }
}

pub(crate) struct Notified<'a> {
    n: &'a Notify,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.n.set.replace(false) {
            return Poll::Ready(());
        }
        let mut slot = self.n.waker.borrow_mut();
        match slot.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A gate many tasks wait on (readers paused while the mesh drains).
#[derive(Default)]
pub(crate) struct Gate {
    closed: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Gate {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub(crate) fn set_closed(&self, closed: bool) {
        let was = self.closed.replace(closed);
        if was && !closed {
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// Resolves when the gate is open.
    pub(crate) fn open(&self) -> GateOpen<'_> {
        GateOpen { g: self }
    }
}

pub(crate) struct GateOpen<'a> {
    g: &'a Gate,
}

impl Future for GateOpen<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.g.closed.get() {
            return Poll::Ready(());
        }
        let mut w = self.g.waiters.borrow_mut();
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
