//! Wire handling: the hickory `RequestHandler` and [`serve`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::Server;
use hickory_server::net::NetError;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, warn};

use crate::config::DnsError;
use crate::geo::{GeoDns, Located, Lookup};
use crate::rate_limit::Verdict;

/// The UDP payload size we advertise in our own OPT record.
const OUR_MAX_PAYLOAD: u16 = 1232;
/// Idle timeout of TCP connections.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves DNS on the given sockets until `shutdown` resolves (UDP and TCP, via
/// `hickory_server::Server`).
pub async fn serve(
    dns: Arc<GeoDns>,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DnsError> {
    let mut server = Server::new(Shared(dns));
    server.register_socket(udp);
    server.register_listener(tcp, TCP_TIMEOUT, 64);
    let token = server.shutdown_token().clone();
    let trigger = tokio::spawn(async move {
        shutdown.await;
        token.cancel();
    });
    let result = server.block_until_done().await;
    trigger.abort();
    result.map_err(|e| DnsError::Server(e.to_string()))
}

/// `Server` wants to own its handler; this shares the caller's `GeoDns`.
struct Shared(Arc<GeoDns>);

#[async_trait::async_trait]
impl RequestHandler for Shared {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.0
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

#[async_trait::async_trait]
impl RequestHandler for GeoDns {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let udp = request.protocol() == Protocol::Udp;
        self.metrics.query(
            request.queries.queries().first().map(|q| q.query_type()),
            udp,
        );
        if udp && let Some(limiter) = &self.limiter {
            match limiter.check(request.src().ip(), Instant::now()) {
                Verdict::Answer => {}
                verdict => {
                    let slipped = verdict == Verdict::Slip;
                    self.metrics.rate_limited(slipped);
                    let mut metadata = Metadata::response_from_request(&request.metadata);
                    if slipped {
                        // Empty and truncated: a real client retries over TCP.
                        metadata.truncation = true;
                        let builder = MessageResponseBuilder::from_message_request(request);
                        if let Err(error) = response_handle
                            .send_response(builder.build_no_records(metadata))
                            .await
                        {
                            debug!(%error, "failed to send a slipped answer");
                        }
                    }
                    return ResponseInfo::from(Header {
                        metadata,
                        counts: HeaderCounts::default(),
                    });
                }
            }
        }
        match self.respond(request, &mut response_handle).await {
            Ok(info) => {
                self.metrics.response(info.response_code);
                info
            }
            Err(error) => {
                warn!(%error, src = %request.src(), "failed to send DNS response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

impl GeoDns {
    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        response_handle: &mut R,
    ) -> Result<ResponseInfo, NetError> {
        let ecs = request
            .edns
            .as_ref()
            .and_then(|edns| match edns.option(EdnsCode::Subnet) {
                Some(EdnsOption::Subnet(subnet)) => Some(*subnet),
                _ => None,
            });

        let (rcode, lookup) = self.decide(request, ecs);

        // Our OPT record, only when the client sent one (RFC 6891).
        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(OUR_MAX_PAYLOAD);
            if let Some(ecs) = ecs {
                let scope = match &lookup {
                    Some(l) if l.used_location && ecs.source_prefix() > 0 => {
                        match self.locate(ecs.addr(), ecs.source_prefix()).network {
                            Some((net, _)) => net.prefix_len(),
                            // Unknown network: the answer holds for what the client revealed.
                            None => ecs.source_prefix(),
                        }
                    }
                    _ => 0,
                };
                let mut echo = ecs;
                echo.set_scope_prefix(scope);
                edns.options_mut().insert(EdnsOption::Subnet(echo));
            }
            edns
        });

        let builder = || {
            let mut builder = MessageResponseBuilder::from_message_request(request);
            if let Some(edns) = &edns {
                builder.edns(edns);
            }
            builder
        };

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = rcode;
        let Some(lookup) = lookup else {
            return response_handle
                .send_response(builder().build_no_records(metadata))
                .await;
        };
        metadata.authoritative = true;

        let build = |metadata: Metadata| {
            builder().build(
                metadata,
                lookup.answers.iter(),
                lookup.authorities.iter(),
                std::iter::empty::<&Record>(),
                lookup.additionals.iter(),
            )
        };

        if request.protocol() == Protocol::Udp {
            // hickory truncates by dropping the records that no longer fit; we send none at
            // all, so a client never mistakes a partial RRset for the whole.
            let mut buf = Vec::with_capacity(512);
            let mut encoder = BinEncoder::new(&mut buf);
            // Never more than the client asked for, nor more than the size that avoids
            // fragmentation: no amplification beyond what the question invites.
            let limit = request.max_payload().clamp(512, OUR_MAX_PAYLOAD);
            let fits = match build(metadata).destructive_emit(&mut encoder) {
                Ok(_) => buf.len() <= usize::from(limit),
                Err(_) => false,
            };
            if !fits {
                debug!(src = %request.src(), size = buf.len(), "truncating UDP answer");
                metadata.truncation = true;
                return response_handle
                    .send_response(builder().build_no_records(metadata))
                    .await;
            }
        }
        response_handle.send_response(build(metadata)).await
    }

    /// The response code, and the records when the question is ours to answer.
    fn decide(
        &self,
        request: &Request,
        ecs: Option<ClientSubnet>,
    ) -> (ResponseCode, Option<Lookup>) {
        if request.metadata.message_type != MessageType::Query {
            return (ResponseCode::FormErr, None);
        }
        if request.metadata.op_code != OpCode::Query {
            return (ResponseCode::NotImp, None);
        }
        let [query] = request.queries.queries() else {
            return (ResponseCode::FormErr, None);
        };
        let qtype = query.query_type();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return (ResponseCode::Refused, None);
        }
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return (ResponseCode::Refused, None);
        }
        if !self.origin.zone_of(query.name()) {
            return (ResponseCode::Refused, None);
        }
        let located = self.client_location(request, ecs);
        let lookup = self.lookup(query.name(), qtype, located);
        (lookup.rcode, Some(lookup))
    }

    fn client_location(&self, request: &Request, ecs: Option<ClientSubnet>) -> Located {
        match ecs {
            Some(ecs) if ecs.source_prefix() > 0 => self.locate(ecs.addr(), ecs.source_prefix()),
            _ => self.locate(request.src().ip(), 128),
        }
    }
}
