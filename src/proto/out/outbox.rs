//! The mesh outbox: messages for other shards, cut into batches per destination, and the
//! local queue for messages this shard sends itself (drained before an input returns, so
//! the control plane behaves the same with 1 shard or 64).

use std::collections::VecDeque;

use smallvec::SmallVec;

use super::super::mesh::{MeshMsg, ShardId, SubTarget};
use crate::limits;

#[derive(Debug)]
pub(crate) struct Outbox {
    /// Per destination shard: batches in order, each cut at `MESH_BATCH_MESSAGES_MAX`.
    boxes: Vec<VecDeque<Vec<MeshMsg>>>,
    len: usize,
    /// Messages the runtime holds for full mesh channels (reported with the outbox).
    pub backlog: usize,
    local: VecDeque<MeshMsg>,
    /// Scratch: per-destination-shard targets of the publication being routed.
    pub route_scratch: Vec<SmallVec<[SubTarget; 2]>>,
}

impl Outbox {
    pub fn new(shards: usize) -> Outbox {
        Outbox {
            boxes: (0..shards).map(|_| VecDeque::new()).collect(),
            len: 0,
            backlog: 0,
            local: VecDeque::new(),
            route_scratch: (0..shards).map(|_| SmallVec::new()).collect(),
        }
    }

    /// Messages waiting in batches (not counting the local queue).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Queue `msg` for shard `to`; `me` is this shard (its messages go to the local queue).
    pub fn push(&mut self, me: ShardId, to: ShardId, msg: MeshMsg) {
        if to == me {
            self.local.push_back(msg);
            return;
        }
        let box_ = &mut self.boxes[to];
        match box_.back_mut() {
            Some(batch) if batch.len() < limits::MESH_BATCH_MESSAGES_MAX => batch.push(msg),
            _ => box_.push_back(vec![msg]),
        }
        self.len += 1;
    }

    /// The next batch to send: (destination, messages in order).
    pub fn pop_batch(&mut self) -> Option<(ShardId, Vec<MeshMsg>)> {
        let (to, box_) = self.boxes.iter_mut().enumerate().find(|(_, b)| !b.is_empty())?;
        let batch = box_.pop_front()?;
        self.len -= batch.len();
        Some((to, batch))
    }

    /// The next message this shard sent itself.
    pub fn pop_local(&mut self) -> Option<MeshMsg> {
        self.local.pop_front()
    }

    pub fn local_is_empty(&self) -> bool {
        self.local.is_empty()
    }
}
