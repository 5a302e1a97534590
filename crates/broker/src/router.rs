//! State shared by every connection, and message routing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use bytes::Bytes;

use crate::client::{lock, Client};
use crate::index::{valid_queue, valid_subscribe_subject, Claim, Index, Matches, Sub};
use crate::parser::ProtoError;
use crate::stats::{Counters, Origin};
use crate::BrokerConfig;

/// The version announced in INFO: the nats-server protocol level we follow.
pub(crate) const ANNOUNCED_VERSION: &str = "2.10.0";

/// The status message async-nats turns into a "no responders" error.
const NO_RESPONDERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

#[derive(Debug)]
pub(crate) struct Router {
    pub config: BrokerConfig,
    pub counters: Arc<Counters>,
    pub local_addr: SocketAddr,
    server_id: String,
    index: RwLock<Index>,
    next_client: AtomicU64,
    next_sub: AtomicU64,
    round_robin: AtomicUsize,
    /// Clients connected now, by id, for the monitoring pages.
    clients: Mutex<BTreeMap<u64, Arc<Client>>>,
    pub started: SystemTime,
}

impl Router {
    pub(crate) fn new(config: BrokerConfig, local_addr: SocketAddr) -> Self {
        Router {
            config,
            counters: Arc::new(Counters::default()),
            local_addr,
            server_id: new_server_id(),
            index: RwLock::new(Index::default()),
            next_client: AtomicU64::new(1),
            next_sub: AtomicU64::new(1),
            round_robin: AtomicUsize::new(0),
            clients: Mutex::new(BTreeMap::new()),
            started: SystemTime::now(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh client id, for INFO before the client exists.
    pub(crate) fn next_client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers an admitted client, connected from `origin`.
    pub(crate) fn new_client(&self, id: u64, origin: Origin) -> Arc<Client> {
        self.counters.connected();
        let client = Arc::new(Client::new(
            id,
            self.config.max_pending,
            self.counters.clone(),
        ));
        let _ = client.stats.origin.set(origin);
        lock(&self.clients).insert(id, client.clone());
        client
    }

    /// Forgets a client that has gone (after its subscriptions are dropped).
    pub(crate) fn forget(&self, id: u64) {
        lock(&self.clients).remove(&id);
    }

    /// The clients connected now, in id order.
    pub(crate) fn clients(&self) -> Vec<Arc<Client>> {
        lock(&self.clients).values().cloned().collect()
    }

    /// Subscriptions in the index now.
    pub(crate) fn subscription_count(&self) -> u64 {
        let index = self.counters.index();
        index.inserts.saturating_sub(index.removes)
    }

    pub(crate) fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The INFO line greeting a new client.
    pub(crate) fn info(&self, client_id: u64, peer: SocketAddr) -> Vec<u8> {
        let mut json = String::with_capacity(256);
        json.push_str("INFO {\"server_id\":");
        json.push_str(&serde_json::Value::from(self.server_id.as_str()).to_string());
        json.push_str(",\"server_name\":");
        json.push_str(&serde_json::Value::from(self.config.server_name.as_str()).to_string());
        json.push_str(&format!(
            ",\"version\":\"{ANNOUNCED_VERSION}\",\"proto\":1,\"go\":\"muster-broker\",\
             \"host\":\"{}\",\"port\":{},\"headers\":true,\"max_payload\":{},\
             \"client_id\":{client_id},\"client_ip\":\"{}\"",
            self.local_addr.ip(),
            self.local_addr.port(),
            self.config.max_payload,
            peer.ip(),
        ));
        if self.config.security.is_some() {
            // The NATS way to upgrade: the client reads this, then starts TLS.
            json.push_str(",\"tls_required\":true,\"tls_verify\":true");
        }
        json.push_str("}\r\n");
        json.into_bytes()
    }

    pub(crate) fn subscribe(
        &self,
        client: &Arc<Client>,
        subject: Bytes,
        queue: Option<Bytes>,
        sid: Bytes,
    ) -> Result<(), ProtoError> {
        if !valid_subscribe_subject(&subject) || queue.as_deref().is_some_and(|q| !valid_queue(q)) {
            return Err(ProtoError::InvalidSubject);
        }
        // Copies, so a long-lived subscription does not pin the read buffer
        // its SUB line was parsed from.
        let subject = Bytes::copy_from_slice(&subject);
        let queue = queue.map(|q| Bytes::copy_from_slice(&q));
        let sid = Bytes::copy_from_slice(&sid);
        let id = self.next_sub.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Sub::new(id, client.clone(), sid.clone(), subject, queue));
        {
            let mut subs = lock(&client.subs);
            if subs.contains_key(&sid) {
                // Like nats-server: a repeated sid keeps the first subscription.
                return Ok(());
            }
            subs.insert(sid, sub.clone());
        }
        self.write().insert(sub);
        self.counters.sub_inserted();
        client.stats.touch();
        Ok(())
    }

    /// UNSUB: at once, or after `max` deliveries in total.
    pub(crate) fn unsubscribe(&self, client: &Client, sid: &[u8], max: Option<u64>) {
        let sub = {
            let mut subs = lock(&client.subs);
            match max {
                Some(max) if max > 0 => match subs.get(sid) {
                    Some(sub) if !sub.set_max(max) => return,
                    Some(_) => subs.remove(sid),
                    None => None,
                },
                _ => subs.remove(sid),
            }
        };
        client.stats.touch();
        if let Some(sub) = sub {
            self.write().remove(&sub);
            self.counters.sub_removed(1);
        }
    }

    /// Removes every subscription of a departing client.
    pub(crate) fn drop_subscriptions(&self, client: &Client) {
        let subs: Vec<Arc<Sub>> = lock(&client.subs).drain().map(|(_, s)| s).collect();
        if subs.is_empty() {
            return;
        }
        let mut index = self.write();
        for sub in &subs {
            index.remove(sub);
        }
        self.counters.sub_removed(subs.len() as u64);
    }

    /// Removes a subscription that has had its `max` messages.
    fn finish(&self, sub: &Sub) {
        self.write().remove(sub);
        let mut subs = lock(&sub.client.subs);
        if subs.get(&sub.sid).is_some_and(|s| s.id == sub.id) {
            subs.remove(&sub.sid);
            self.counters.sub_removed(1);
        }
    }

    /// Routes one published message. `matches` is the caller's scratch space.
    pub(crate) fn publish(
        &self,
        from: &Client,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        message: &[u8],
        matches: &mut Matches,
    ) {
        self.counters.received(message.len());
        from.stats.received(message.len());
        matches.clear();
        self.read().collect(subject, matches);
        let nobody = matches.is_empty();
        self.counters.matched(
            (matches.plain.len() + matches.queues.iter().map(|(_, m)| m.len()).sum::<usize>())
                as u64,
        );
        let skip = |sub: &Sub| !from.echo() && sub.client.id == from.id;

        let mut tally = Tally::default();
        for sub in matches.plain.iter().filter(|s| !skip(s)) {
            tally.deliver(sub, subject, reply, header_len, message);
        }
        for (_, members) in &matches.queues {
            // Round-robin start, then the first member able to take it.
            let start = self.round_robin.fetch_add(1, Ordering::Relaxed);
            let order = (0..members.len()).map(|k| &members[(start + k) % members.len()]);
            for sub in order.filter(|s| !skip(s)) {
                if tally.deliver(sub, subject, reply, header_len, message) {
                    break;
                }
            }
        }

        if let Some(reply) = reply.filter(|_| nobody && from.wants_no_responders()) {
            // Answer on the requester's own inbox, so it fails fast.
            matches.clear();
            self.read().collect(reply, matches);
            let own = matches.queues.iter().flat_map(|(_, m)| m.iter());
            for sub in matches
                .plain
                .iter()
                .chain(own)
                .filter(|s| s.client.id == from.id)
            {
                tally.deliver(sub, reply, None, Some(NO_RESPONDERS.len()), NO_RESPONDERS);
            }
        }
        matches.clear();
        self.counters.delivered(tally.msgs, tally.bytes);
        for sub in tally.finished {
            self.finish(&sub);
        }
    }
}

/// What one publish delivered.
#[derive(Default)]
struct Tally {
    msgs: u64,
    bytes: u64,
    /// Subscriptions that reached their auto-unsubscribe limit.
    finished: Vec<Arc<Sub>>,
}

impl Tally {
    /// Delivers to one subscription unless it has had all it wanted.
    fn deliver(
        &mut self,
        sub: &Arc<Sub>,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        message: &[u8],
    ) -> bool {
        let last = match sub.claim() {
            Claim::Exhausted => {
                // A limit set while a delivery raced past it: make sure it goes.
                self.finished.push(sub.clone());
                return false;
            }
            Claim::Deliver => false,
            Claim::DeliverLast => true,
        };
        let sent = sub
            .client
            .send_msg(subject, &sub.sid, reply, header_len, message);
        if last {
            self.finished.push(sub.clone());
        }
        if sent {
            self.msgs += 1;
            self.bytes += message.len() as u64;
            sub.client.stats.delivered(message.len());
        }
        sent
    }
}

fn new_server_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("MUSTER{nanos:016X}{:08X}{seq:04X}", std::process::id())
}
