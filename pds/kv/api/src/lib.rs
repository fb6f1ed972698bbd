//! The key-value service's client stub: kv's requests and replies over
//! the common stub (`service-stub`), which finds the live slot through the
//! capability map and runs each request exactly once.
#![no_std]

use interfaces::kv::{KvReply, KvRequest, KvStatus};
use interfaces::Message;
use pd_api::Pd;
use service_stub::{CallError, Stub};

pub use service_stub::UNAVAILABLE_AFTER_NS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvError {
    /// The service answered with an error status.
    Status(KvStatus),
    /// No slot became live within [`UNAVAILABLE_AFTER_NS`].
    Unavailable,
    /// The reply was malformed.
    BadReply,
}

impl From<CallError<KvStatus>> for KvError {
    fn from(e: CallError<KvStatus>) -> Self {
        match e {
            CallError::Encode(s) => KvError::Status(s),
            CallError::Unavailable => KvError::Unavailable,
        }
    }
}

pub struct KvClient<'p, P: Pd + ?Sized> {
    stub: Stub<'p, P>,
    msg: Message,
}

impl<'p, P: Pd + ?Sized> KvClient<'p, P> {
    /// Connects to the instance of service `service` (e.g. `kv`) this PD
    /// has channels to: `{instance}_a` and `{instance}_b`, with the
    /// capability map mapped as `capmap`. Waits for the manager to publish
    /// the map at boot.
    pub fn connect(pd: &'p P, service: &str) -> Result<Self, &'static str> {
        Ok(KvClient { stub: Stub::connect(pd, service)?, msg: Message::default() })
    }

    /// Runs `req` exactly once; the reply stays in `self.msg` for parsing.
    #[inline]
    fn call(&mut self, req: &KvRequest) -> Result<KvReply<'_>, KvError> {
        self.stub.call(&mut self.msg, |msg| req.encode(msg))?;
        KvReply::parse(&self.msg).ok_or(KvError::BadReply)
    }

    /// The binding the capability map holds now (for a report).
    pub fn binding(&self) -> Option<interfaces::capmap::Binding> {
        self.stub.instance().binding()
    }

    /// Calls bounced by a slot and retried.
    pub fn retried(&self) -> u64 {
        self.stub.retried
    }

    fn ok(r: KvReply<'_>) -> Result<KvReply<'_>, KvError> {
        match r.status {
            KvStatus::Ok => Ok(r),
            s => Err(KvError::Status(s)),
        }
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.call(&KvRequest::Put { key, value }).and_then(Self::ok).map(|_| ())
    }

    /// Copies the value into `out`; `Ok(None)` if the key is absent.
    pub fn get(&mut self, key: &[u8], out: &mut [u8]) -> Result<Option<usize>, KvError> {
        let r = self.call(&KvRequest::Get { key })?;
        match r.status {
            KvStatus::Ok => {
                let n = r.data.len().min(out.len());
                out[..n].copy_from_slice(&r.data[..n]);
                Ok(Some(n))
            }
            KvStatus::NotFound => Ok(None),
            s => Err(KvError::Status(s)),
        }
    }

    /// `Ok(false)` if the key was absent.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, KvError> {
        let r = self.call(&KvRequest::Delete { key })?;
        match r.status {
            KvStatus::Ok => Ok(true),
            KvStatus::NotFound => Ok(false),
            s => Err(KvError::Status(s)),
        }
    }

    /// Calls `f` with each key from `cursor`; returns the next cursor.
    pub fn list(&mut self, cursor: u32, mut f: impl FnMut(&[u8])) -> Result<u32, KvError> {
        let r = self.call(&KvRequest::List { cursor }).and_then(Self::ok)?;
        r.list_keys().for_each(&mut f);
        Ok(r.aux)
    }

    /// The module version serving this client (kv v2 and later).
    pub fn version(&mut self) -> Result<u32, KvError> {
        self.call(&KvRequest::Version).and_then(Self::ok).map(|r| r.aux)
    }
}
