//! The resource group (Heartbeat's `haresources`): an ordered list of
//! daemons serving `tandem.resource.v1`. Going ACTIVE walks it in order,
//! each step waited for with its own timeout; a failure at step k rolls
//! steps k-1..0 back to STANDBY. Going STANDBY walks it in reverse. While
//! ACTIVE, a watcher per resource reports one that stops being ACTIVE or
//! reports FAILED health.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tandem_daemon::client::connect_unix;
use tandem_proto::hb::v1 as hb;
use tandem_proto::resource::v1 as pb;
use tandem_proto::resource::v1::resource_client::ResourceClient;
use tandem_proto::vip::v1::vip_client::VipClient;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::config::ResourceSpec;

/// One step that did not work.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{name}: {why}")]
pub struct StepError {
    /// The resource.
    pub name: String,
    /// What went wrong.
    pub why: String,
}

/// A takeover that failed at `step` and was rolled back.
#[derive(Debug, Clone, thiserror::Error)]
#[error("step {} of {total} failed: {failure}{}", step + 1, rollback_note(.rollback))]
pub struct ActivateError {
    /// The index of the step that failed.
    pub step: usize,
    /// How many steps the group has.
    pub total: usize,
    /// What failed.
    pub failure: StepError,
    /// Rollback steps that failed too (the resource stays as it was).
    pub rollback: Vec<StepError>,
}

fn rollback_note(errors: &[StepError]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("; rollback failed too: {}", list.join("; "))
    }
}

struct Member {
    spec: ResourceSpec,
    channel: tokio::sync::Mutex<Option<Channel>>,
    seen: Mutex<(String, String)>,
}

/// The group, with a cached channel per resource.
#[derive(Clone)]
pub struct Group {
    members: Arc<Vec<Member>>,
}

impl Group {
    /// The group of `specs`, in order. Nothing is contacted yet.
    pub fn new(specs: &[ResourceSpec]) -> Self {
        let members = specs
            .iter()
            .map(|spec| Member {
                spec: spec.clone(),
                channel: tokio::sync::Mutex::new(None),
                seen: Mutex::new(("UNKNOWN".into(), String::new())),
            })
            .collect();
        Self {
            members: Arc::new(members),
        }
    }

    /// How many resources.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the group is empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The resources as last seen, for status.
    pub fn view(&self) -> Vec<hb::GroupResource> {
        self.members
            .iter()
            .map(|m| {
                let (state, detail) = m.seen.lock().map(|s| s.clone()).unwrap_or_default();
                hb::GroupResource {
                    name: m.spec.name.clone(),
                    endpoint: m.spec.socket.display().to_string(),
                    state,
                    detail,
                }
            })
            .collect()
    }

    async fn channel(&self, i: usize) -> Result<Channel, StepError> {
        let member = &self.members[i];
        let mut cached = member.channel.lock().await;
        if let Some(channel) = cached.as_ref() {
            return Ok(channel.clone());
        }
        let channel = connect_unix(&member.spec.socket)
            .await
            .map_err(|e| self.fail(i, e.to_string()))?;
        *cached = Some(channel.clone());
        Ok(channel)
    }

    fn fail(&self, i: usize, why: String) -> StepError {
        let member = &self.members[i];
        if let Ok(mut seen) = member.seen.lock() {
            seen.1.clone_from(&why);
        }
        StepError {
            name: member.spec.name.clone(),
            why,
        }
    }

    fn record(&self, i: usize, status: &pb::ResourceStatus) {
        if let Ok(mut seen) = self.members[i].seen.lock() {
            *seen = (state_name(status.state), status.detail.clone());
        }
    }

    /// The highest epoch any resource has accepted (so a restarted hbd
    /// never commands with a lower one). Unreachable resources count 0.
    pub async fn highest_epoch(&self) -> u64 {
        let mut highest = 0;
        for i in 0..self.members.len() {
            let Ok(channel) = self.channel(i).await else {
                continue;
            };
            let mut client = ResourceClient::new(channel);
            let call = client.get_status(pb::GetStatusRequest {});
            if let Ok(Ok(status)) = tokio::time::timeout(self.members[i].spec.timeout, call).await {
                let status = status.into_inner();
                self.record(i, &status);
                highest = highest.max(status.epoch);
            }
        }
        highest
    }

    /// Moves resource `i` to `target` under `epoch`, within its timeout.
    async fn step(&self, i: usize, target: pb::State, epoch: u64) -> Result<(), StepError> {
        let spec = &self.members[i].spec;
        let channel = self.channel(i).await?;
        let request = pb::TransitionRequest {
            target: target.into(),
            epoch,
        };
        let mut client = ResourceClient::new(channel);
        let call = client.transition(request);
        match tokio::time::timeout(spec.timeout, call).await {
            Err(_) => Err(self.fail(
                i,
                format!(
                    "no answer to {} within {}",
                    state_name(target.into()),
                    humantime::format_duration(spec.timeout)
                ),
            )),
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unavailable {
                    *self.members[i].channel.lock().await = None;
                }
                Err(self.fail(i, format!("{:?}: {}", status.code(), status.message())))
            }
            Ok(Ok(response)) => {
                if let Some(status) = response.into_inner().status {
                    self.record(i, &status);
                }
                Ok(())
            }
        }
    }

    /// Every resource ACTIVE in order; returns when each finished. A
    /// failure at step k rolls k-1..0 back to STANDBY, in reverse.
    pub async fn activate(&self, epoch: u64) -> Result<Vec<(String, Instant)>, ActivateError> {
        let mut done = Vec::new();
        for i in 0..self.members.len() {
            match self.step(i, pb::State::Active, epoch).await {
                Ok(()) => done.push((self.members[i].spec.name.clone(), Instant::now())),
                Err(failure) => {
                    let mut rollback = Vec::new();
                    for j in (0..i).rev() {
                        if let Err(e) = self.step(j, pb::State::Standby, epoch).await {
                            rollback.push(e);
                        }
                    }
                    return Err(ActivateError {
                        step: i,
                        total: self.members.len(),
                        failure,
                        rollback,
                    });
                }
            }
        }
        Ok(done)
    }

    /// Every resource to `target` (STANDBY or STOPPED) in reverse order.
    /// Every step is tried even after one fails; the failures are returned.
    pub async fn deactivate(&self, target: pb::State, epoch: u64) -> Vec<StepError> {
        let mut failures = Vec::new();
        for i in (0..self.members.len()).rev() {
            if let Err(e) = self.step(i, target, epoch).await {
                failures.push(e);
            }
        }
        failures
    }

    /// Every resource to STANDBY in order (at start: prepared and warm).
    pub async fn prepare(&self, epoch: u64) -> Vec<StepError> {
        let mut failures = Vec::new();
        for i in 0..self.members.len() {
            if let Err(e) = self.step(i, pb::State::Standby, epoch).await {
                failures.push(e);
            }
        }
        failures
    }

    /// Watches every resource while the group is ACTIVE: the first one
    /// that leaves ACTIVE, reports FAILED health or cannot be watched is
    /// sent to `failed`. Cancel the returned token to stop watching.
    pub fn watch(&self, failed: mpsc::Sender<StepError>) -> CancellationToken {
        let stop = CancellationToken::new();
        for i in 0..self.members.len() {
            let group = self.clone();
            let failed = failed.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let failure = tokio::select! {
                    () = stop.cancelled() => return,
                    failure = group.watch_one(i) => failure,
                };
                if !stop.is_cancelled() {
                    let _ = failed.send(failure).await;
                }
            });
        }
        stop
    }

    async fn watch_one(&self, i: usize) -> StepError {
        let channel = match self.channel(i).await {
            Ok(channel) => channel,
            Err(e) => return e,
        };
        let mut stream = match ResourceClient::new(channel)
            .watch_status(pb::WatchStatusRequest {})
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return self.fail(i, format!("cannot watch: {}", status.message())),
        };
        while let Some(item) = stream.next().await {
            let status = match item {
                Ok(status) => status,
                Err(status) => return self.fail(i, format!("watch ended: {}", status.message())),
            };
            self.record(i, &status);
            if status.pending != 0 {
                continue;
            }
            if status.health == pb::Health::Failed as i32 {
                return self.fail(i, format!("health FAILED: {}", status.detail));
            }
            if status.state != pb::State::Active as i32 {
                return self.fail(i, format!("left ACTIVE: now {}", state_name(status.state)));
            }
        }
        self.fail(i, "watch ended (the daemon went away)".into())
    }

    /// Asks every resource that serves `tandem.vip.v1` to announce its
    /// addresses now; the others are skipped. Returns the ones that did.
    pub async fn announce(&self) -> Vec<String> {
        let mut announced = Vec::new();
        for i in 0..self.members.len() {
            let Ok(channel) = self.channel(i).await else {
                continue;
            };
            let mut client = VipClient::new(channel);
            let call = client.announce(tandem_proto::vip::v1::AnnounceRequest {
                addresses: Vec::new(),
            });
            match tokio::time::timeout(self.members[i].spec.timeout, call).await {
                Ok(Ok(_)) => announced.push(self.members[i].spec.name.clone()),
                Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {}
                Ok(Err(status)) => tracing::warn!(
                    resource = %self.members[i].spec.name,
                    error = %status.message(),
                    "re-announcement failed"
                ),
                Err(_) => {
                    tracing::warn!(resource = %self.members[i].spec.name, "re-announcement timed out")
                }
            }
        }
        announced
    }
}

/// The name of a `tandem.resource.v1.State` value.
fn state_name(state: i32) -> String {
    match pb::State::try_from(state) {
        Ok(pb::State::Stopped) => "STOPPED".into(),
        Ok(pb::State::Standby) => "STANDBY".into(),
        Ok(pb::State::Active) => "ACTIVE".into(),
        _ => "UNKNOWN".into(),
    }
}
