//! [`IpvsService`]: `tandem.ipvs.v1.Ipvs` over the table owner. Requests
//! are converted and validated whole ([`convert`]) before the owner sees
//! them; this is the one place where owner errors become gRPC codes.

pub mod convert;
mod status;

use std::pin::Pin;
use std::time::Duration;

use tandem_proto::ipvs::v1 as pb;
use tandem_proto::ipvs::v1::ipvs_server::{Ipvs, IpvsServer};
use tandem_resource::ResourceMachine;
use tokio_stream::{Stream, StreamExt, wrappers::WatchStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::drain::{self, Progress};
use crate::effective::{Drain, RealId};
use crate::field::FieldError;
use crate::owner::{Change, ChangeError, Connect, Owner};
use crate::rules;

/// The gRPC face of the table owner.
pub struct IpvsService<C: Connect> {
    machine: ResourceMachine<Owner<C>>,
    shutdown: CancellationToken,
}

impl<C: Connect> IpvsService<C> {
    /// A service over the owner in `machine`; `Watch` streams end when
    /// `shutdown` is cancelled.
    pub fn new(machine: ResourceMachine<Owner<C>>, shutdown: CancellationToken) -> Self {
        Self { machine, shutdown }
    }

    /// The tonic server wrapper, ready to add to a router.
    pub fn into_server(self) -> IpvsServer<Self> {
        IpvsServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    fn owner(&self) -> &Owner<C> {
        self.machine.hook()
    }
}

fn invalid(e: FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn to_status(e: ChangeError) -> Status {
    match e {
        ChangeError::Invalid(e) => invalid(e),
        ChangeError::NotFound(what) => Status::not_found(what),
        e @ ChangeError::Refused(_) => Status::aborted(e.to_string()),
        ChangeError::Backend(e) => Status::unavailable(e.to_string()),
    }
}

fn change_response((change, ()): (Change, ())) -> Response<pb::ChangeResponse> {
    Response::new(pb::ChangeResponse {
        plan: change.plan.iter().map(ToString::to_string).collect(),
        applied: change.applied,
        version: change.version,
    })
}

fn drained_reals(progress: Vec<Progress>, timed_out: Option<bool>) -> pb::DrainResponse {
    let reals = progress
        .into_iter()
        .map(|p| {
            let (key, address, port) = p.id;
            // A removed real's state is gone: it was drained when removed.
            let drain = if p.removed {
                Drain::Drained {
                    timed_out: timed_out.unwrap_or(false),
                }
            } else {
                p.drain
            };
            pb::DrainedReal {
                service: key.to_string(),
                address: address.to_string(),
                port: port.into(),
                drain: convert::drain_to_wire(drain).into(),
                active_conns: p.active,
                timed_out: matches!(drain, Drain::Drained { timed_out: true }),
                removed: p.removed,
            }
        })
        .collect();
    pb::DrainResponse { reals }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::TableSnapshot, Status>> + Send>>;

#[tonic::async_trait]
impl<C: Connect> Ipvs for IpvsService<C> {
    async fn list_services(
        &self,
        _request: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        let view = self
            .owner()
            .view()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(status::list(&view)))
    }

    async fn get_service(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> Result<Response<pb::ServiceStatus>, Status> {
        let key = convert::required_key("service", request.get_ref().service.as_ref())
            .map_err(invalid)?;
        let view = self
            .owner()
            .view()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let vs = view
            .model
            .service(key)
            .map_err(|e| Status::not_found(e.to_string()))?;
        Ok(Response::new(status::service(&view, vs)))
    }

    async fn put_service(
        &self,
        request: Request<pb::PutServiceRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let req = request.into_inner();
        let wire = req
            .service
            .ok_or_else(|| invalid(FieldError::new("service", "required")))?;
        let vs = convert::virtual_service(&wire).map_err(|e| invalid(e.within("service")))?;
        self.owner()
            .change(req.dry_run, |m| m.put_service(vs))
            .await
            .map(change_response)
            .map_err(to_status)
    }

    async fn delete_service(
        &self,
        request: Request<pb::DeleteServiceRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let req = request.into_inner();
        let key = convert::required_key("service", req.service.as_ref()).map_err(invalid)?;
        self.owner()
            .change(req.dry_run, |m| m.delete_service(key))
            .await
            .map(change_response)
            .map_err(to_status)
    }

    async fn put_real(
        &self,
        request: Request<pb::PutRealRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let req = request.into_inner();
        let key = convert::required_key("service", req.service.as_ref()).map_err(invalid)?;
        let wire = req
            .real
            .ok_or_else(|| invalid(FieldError::new("real", "required")))?;
        let real = convert::real_server(&wire).map_err(|e| invalid(e.within("real")))?;
        self.owner()
            .change(req.dry_run, |m| m.put_real(key, real))
            .await
            .map(change_response)
            .map_err(to_status)
    }

    async fn delete_real(
        &self,
        request: Request<pb::DeleteRealRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let req = request.into_inner();
        let key = convert::required_key("service", req.service.as_ref()).map_err(invalid)?;
        let address = convert::address("address", &req.address).map_err(invalid)?;
        let port = req
            .port
            .map(|p| convert::port("port", p))
            .transpose()
            .map_err(invalid)?;
        self.owner()
            .change(req.dry_run, |m| m.delete_real(key, address, port))
            .await
            .map(change_response)
            .map_err(to_status)
    }

    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let req = request.into_inner();
        let services = match req.table {
            None => {
                return Err(invalid(FieldError::new(
                    "table",
                    "give services or ipvsadm_rules",
                )));
            }
            Some(pb::apply_request::Table::Services(list)) => list
                .services
                .iter()
                .enumerate()
                .map(|(i, vs)| {
                    convert::virtual_service(vs).map_err(|e| e.within(&format!("services[{i}]")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?,
            Some(pb::apply_request::Table::IpvsadmRules(text)) => {
                let mut table = rules::import(&text)
                    .map_err(|e| invalid(FieldError::new("ipvsadm_rules", e.to_string())))?;
                // Probe services (ipvsd's own, from through_vip checks, which
                // the format cannot say) come back with the checks, not from here.
                let probe_marks = self.owner().config().probe_marks;
                table
                    .services
                    .retain(|key, _| !probe_marks.is_probe_service(key));
                crate::effective::services_of_table(&table)
                    .map_err(|e| invalid(FieldError::new("ipvsadm_rules", e)))?
            }
        };
        self.owner()
            .change(req.dry_run, |m| m.replace(services))
            .await
            .map(change_response)
            .map_err(to_status)
    }

    async fn drain(
        &self,
        request: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        let req = request.into_inner();
        let selector = convert::selector("reals", req.reals.as_ref()).map_err(invalid)?;
        let timeout = req.timeout_ms.map_or(drain::DEFAULT_TIMEOUT, |ms| {
            Duration::from_millis(ms.into())
        });
        let (id, ids) = drain::start(self.owner(), &selector)
            .await
            .map_err(to_status)?;
        let follower = tokio::spawn(drain::follow(
            self.machine.clone(),
            id,
            ids.clone(),
            timeout,
            req.remove,
        ));
        let timed_out = if req.wait {
            follower
                .await
                .map_err(|e| Status::internal(format!("drain {id} failed: {e}")))?
        } else {
            None
        };
        let progress = drain::progress(self.owner(), &ids).await;
        Ok(Response::new(drained_reals(progress, timed_out)))
    }

    async fn undrain(
        &self,
        request: Request<pb::UndrainRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        let selector =
            convert::selector("reals", request.get_ref().reals.as_ref()).map_err(invalid)?;
        let ids = drain::undrain(self.owner(), &selector)
            .await
            .map_err(to_status)?;
        let progress = drain::progress(self.owner(), &ids).await;
        Ok(Response::new(drained_reals(progress, None)))
    }

    type WatchStream = SnapshotStream;

    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let updates = WatchStream::new(self.owner().subscribe()).map(|s| {
            Ok(pb::TableSnapshot {
                version: s.version,
                services: s
                    .services
                    .iter()
                    .map(convert::virtual_service_to_wire)
                    .collect(),
                probe_marks: s
                    .probe_marks
                    .iter()
                    .map(|(&(service, address, port), &mark)| pb::ProbeMark {
                        service: Some(convert::service_key_to_wire(service)),
                        address: address.to_string(),
                        port: u32::from(port),
                        mark,
                    })
                    .collect(),
            })
        });
        let stream =
            futures_util::StreamExt::take_until(updates, self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_health(
        &self,
        request: Request<pb::ReportHealthRequest>,
    ) -> Result<Response<pb::ReportHealthResponse>, Status> {
        let reports = request
            .into_inner()
            .reports
            .iter()
            .enumerate()
            .map(|(i, r)| health_report(r).map_err(|e| e.within(&format!("reports[{i}]"))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let (changed, unknown) = self
            .owner()
            .observe(|m| {
                let mut changed = 0;
                let mut unknown = Vec::new();
                for (id, health, detail) in reports {
                    match m.set_health(id, health, detail) {
                        Ok(true) => changed += 1,
                        Ok(false) => {}
                        Err(e) => unknown.push(e.to_string()),
                    }
                }
                (changed, unknown)
            })
            .await;
        Ok(Response::new(pb::ReportHealthResponse { changed, unknown }))
    }

    async fn export_rules(
        &self,
        request: Request<pb::ExportRulesRequest>,
    ) -> Result<Response<pb::ExportRulesResponse>, Status> {
        let table = if request.get_ref().kernel {
            self.owner()
                .read_data_plane()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?
        } else {
            self.owner().read(|m| m.desired()).await
        };
        Ok(Response::new(pb::ExportRulesResponse {
            rules: rules::export(&table),
        }))
    }
}

fn health_report(
    r: &pb::HealthReport,
) -> Result<(RealId, crate::effective::Health, String), FieldError> {
    let key = convert::required_key("service", r.service.as_ref())?;
    let address = convert::address("address", &r.address)?;
    let port = convert::port("port", r.port)?;
    let health = convert::reported_health("health", r.health)?;
    Ok(((key, address, port), health, r.detail.clone()))
}

#[cfg(test)]
mod tests;
