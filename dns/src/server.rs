//! Wire handling: [`serve`], with Outpost's own UDP threads and the hickory `RequestHandler` for
//! TCP; both put the same [`Reply`] on the wire.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
    emit_message_parts,
};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, LowerName, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, warn};

use crate::config::DnsError;
use crate::geo::{GeoDns, Lookup};
use crate::rate_limit::Verdict;

/// The UDP payload size we advertise in our own OPT record.
const OUR_MAX_PAYLOAD: u16 = 1232;
/// Idle timeout of TCP connections.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many threads answer UDP queries, each on a socket of its own (SO_REUSEPORT: the kernel
/// spreads clients over them by address, and no two threads wait on one socket).
fn udp_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8))
}

/// How often a UDP thread that has nothing to read checks for shutdown.
const UDP_POLL: Duration = Duration::from_millis(200);

/// Binds UDP and TCP on one address. With port 0, TCP takes the port UDP got; when another
/// program holds that port for TCP, it starts over with a new port (a few times).
pub async fn bind(
    listen: std::net::SocketAddr,
) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let mut attempts = if listen.port() == 0 { 16 } else { 1 };
    loop {
        let udp = tokio::net::UdpSocket::from_std(udp_socket(listen)?)?;
        match tokio::net::TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && attempts > 1 => {
                attempts -= 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A UDP socket on `addr` that more sockets of this process can share (SO_REUSEPORT where the
/// system has it), blocking.
fn udp_socket(addr: std::net::SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Serves DNS on the given sockets until `shutdown` resolves: UDP on Outpost's own threads
/// (blocking reads, one thread per core, no task, wake-up or channel per query, as gdnsd
/// does), TCP through `hickory_server::Server`.
pub async fn serve(
    dns: Arc<GeoDns>,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    mut shutdown: outpost_server::ShutdownSignal,
) -> Result<(), DnsError> {
    let mut server = Server::new(Shared(dns.clone()));
    server.register_listener(tcp, TCP_TIMEOUT, 64);
    let token = server.shutdown_token().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let trigger = tokio::spawn(async move {
        shutdown.triggered().await;
        stopping.store(true, Ordering::Relaxed);
        token.cancel();
    });
    let udp = udp
        .into_std()
        .and_then(|socket| {
            socket.set_nonblocking(false)?;
            socket.set_read_timeout(Some(UDP_POLL))?;
            Ok(socket)
        })
        .map_err(|e| DnsError::Server(format!("UDP socket: {e}")))?;
    let mut threads = Vec::new();
    let local = udp
        .local_addr()
        .map_err(|e| DnsError::Server(format!("UDP socket: {e}")))?;
    for n in 0..udp_workers() {
        // The bound socket for the first thread, one more on the same address for each other
        // (or, where the system shares no port, the same socket).
        let socket = if n == 0 {
            udp.try_clone()
        } else {
            udp_socket(local)
                .and_then(|socket| {
                    socket.set_nonblocking(false)?;
                    socket.set_read_timeout(Some(UDP_POLL))?;
                    Ok(socket)
                })
                .or_else(|error| {
                    debug!(%error, "no UDP socket of its own for this thread: sharing one");
                    udp.try_clone()
                })
        }
        .map_err(|e| DnsError::Server(format!("UDP socket: {e}")))?;
        let (dns, stop) = (dns.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("outpost-dns-udp-{n}"))
            .spawn(move || serve_udp(&dns, &socket, &stop))
            .map_err(|e| DnsError::Server(format!("UDP thread: {e}")))?;
        threads.push(thread);
    }
    let result = server.block_until_done().await;
    trigger.abort();
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await
    .map_err(|e| DnsError::Server(e.to_string()))?;
    result.map_err(|e| DnsError::Server(e.to_string()))
}

/// Datagrams one thread takes from its socket in one system call, at most.
#[cfg(target_os = "linux")]
const UDP_BATCH: usize = 32;

/// Answers datagrams in batches: one `recvmmsg` takes every query waiting (up to
/// [`UDP_BATCH`]; it blocks only for the first), one `sendmmsg` sends every answer. Under load
/// that is two system calls and one wake-up per batch instead of per query.
#[cfg(target_os = "linux")]
fn serve_udp(dns: &GeoDns, socket: &std::net::UdpSocket, stop: &AtomicBool) {
    use nix::errno::Errno;
    use nix::sys::socket::{
        ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
    };
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;

    let fd = socket.as_raw_fd();
    let mut packets = vec![[0u8; 4096]; UDP_BATCH];
    let mut received = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut sending = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut replies: Vec<Vec<u8>> = (0..UDP_BATCH)
        .map(|_| Vec::with_capacity(usize::from(OUR_MAX_PAYLOAD)))
        .collect();
    let mut queries: Vec<(usize, std::net::SocketAddr)> = Vec::with_capacity(UDP_BATCH);
    let mut to: Vec<Option<SockaddrStorage>> = Vec::with_capacity(UDP_BATCH);
    while !stop.load(Ordering::Relaxed) {
        queries.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = packets
                .iter_mut()
                .map(|packet| [IoSliceMut::new(packet)])
                .collect();
            match recvmmsg(
                fd,
                &mut received,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(messages) => queries.extend(messages.filter_map(|message| {
                    Some((message.bytes, socket_addr(message.address.as_ref()?)?))
                })),
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(error) => {
                    debug!(%error, "DNS UDP receive failed");
                    continue;
                }
            }
        }
        to.clear();
        for (index, &(length, source)) in queries.iter().enumerate() {
            let reply = &mut replies[to.len()];
            reply.clear();
            if dns.answer_udp(&packets[index][..length], source.ip(), reply) {
                to.push(Some(SockaddrStorage::from(source)));
            }
        }
        if to.is_empty() {
            continue;
        }
        let slices: Vec<[IoSlice<'_>; 1]> = replies[..to.len()]
            .iter()
            .map(|reply| [IoSlice::new(reply)])
            .collect();
        let none: [ControlMessage<'_>; 0] = [];
        if let Err(error) = sendmmsg(fd, &mut sending, &slices, &to, none, MsgFlags::empty()) {
            debug!(%error, answers = to.len(), "DNS UDP send failed");
        }
    }
}

/// A socket address as nix gives it, as the standard library's.
#[cfg(target_os = "linux")]
fn socket_addr(address: &nix::sys::socket::SockaddrStorage) -> Option<std::net::SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(std::net::SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| std::net::SocketAddr::V6((*v6).into()))
}

#[cfg(not(target_os = "linux"))]
fn serve_udp(dns: &GeoDns, socket: &std::net::UdpSocket, stop: &AtomicBool) {
    let mut packet = vec![0u8; 4096];
    let mut reply = Vec::with_capacity(usize::from(OUR_MAX_PAYLOAD));
    while !stop.load(Ordering::Relaxed) {
        let (len, source) = match socket.recv_from(&mut packet) {
            Ok(received) => received,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(error) => {
                debug!(%error, "DNS UDP receive failed");
                continue;
            }
        };
        reply.clear();
        if dns.answer_udp(&packet[..len], source.ip(), &mut reply)
            && let Err(error) = socket.send_to(&reply, source)
        {
            debug!(%error, %source, "DNS UDP send failed");
        }
    }
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

/// The single question of a query, as the zone logic sees it.
struct Question {
    name: LowerName,
    qtype: RecordType,
    class: DNSClass,
}

/// One query, whatever transport it came over.
struct Query<'a> {
    metadata: &'a Metadata,
    /// `None` unless the query asks exactly one question.
    question: Option<Question>,
    edns: Option<&'a Edns>,
    source: IpAddr,
}

/// The reply to one query, before it is encoded.
struct Reply {
    metadata: Metadata,
    lookup: Option<Lookup>,
    edns: Option<Edns>,
}

/// Encodes a reply into `out`; false if it cannot be encoded.
fn emit(
    out: &mut Vec<u8>,
    metadata: &Metadata,
    queries: &[hickory_proto::op::Query],
    lookup: Option<&Lookup>,
    edns: Option<&Edns>,
) -> bool {
    let none: &[Record] = &[];
    let (answers, authorities, additionals) = lookup.map_or((none, none, none), |l| {
        (&l.answers[..], &l.authorities[..], &l.additionals[..])
    });
    let mut encoder = BinEncoder::new(out);
    emit_message_parts(
        metadata,
        &mut queries.iter(),
        &mut answers.iter(),
        &mut authorities.iter(),
        &mut additionals.iter(),
        edns,
        None,
        &mut encoder,
    )
    .is_ok()
}

#[async_trait::async_trait]
impl RequestHandler for GeoDns {
    /// TCP queries (UDP has its own loop, [`GeoDns::answer_udp`]).
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let queries = request.queries.queries();
        self.metrics
            .query(queries.first().map(|q| q.query_type()), false);
        let question = match queries {
            [query] => Some(Question {
                name: query.name().clone(),
                qtype: query.query_type(),
                class: query.query_class(),
            }),
            _ => None,
        };
        let reply = self.reply(&Query {
            metadata: &request.metadata,
            question,
            edns: request.edns.as_ref(),
            source: request.src().ip(),
        });
        self.metrics.response(reply.metadata.response_code);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &reply.edns {
            builder.edns(edns);
        }
        let sent = match &reply.lookup {
            Some(lookup) => {
                let response = builder.build(
                    reply.metadata,
                    lookup.answers.iter(),
                    lookup.authorities.iter(),
                    std::iter::empty::<&Record>(),
                    lookup.additionals.iter(),
                );
                response_handle.send_response(response).await
            }
            None => {
                response_handle
                    .send_response(builder.build_no_records(reply.metadata))
                    .await
            }
        };
        match sent {
            Ok(info) => info,
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
    /// Answers one UDP datagram from `source` exactly as the UDP server does (rate limit,
    /// parsing, size limits): the bytes to send back, or `None` for silence. The fuzzer drives
    /// the server through it.
    pub fn answer_datagram(&self, packet: &[u8], source: IpAddr) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.answer_udp(packet, source, &mut out).then_some(out)
    }

    /// Answers one UDP datagram into `out`; false when nothing is to be sent (a response, an
    /// unreadable header, or a query over its network's rate).
    pub(crate) fn answer_udp(&self, packet: &[u8], source: IpAddr, out: &mut Vec<u8>) -> bool {
        // Rate limiting is decided first, for malformed packets too: a flood of garbage is
        // answered no more than queries are. (The packet is still read, for the counters.)
        let verdict = match &self.limiter {
            Some(limiter) => limiter.check(source, Instant::now()),
            None => Verdict::Answer,
        };
        let message = match Message::from_vec(packet) {
            Ok(message) => message,
            Err(_) => {
                // A readable query header gets FORMERR; anything less gets silence.
                let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
                    return false;
                };
                if header.metadata.message_type != MessageType::Query {
                    return false;
                }
                self.metrics.query(None, true);
                if verdict != Verdict::Answer {
                    self.metrics.rate_limited(false);
                    return false;
                }
                self.metrics.response(ResponseCode::FormErr);
                let mut metadata = Metadata::response_from_request(&header.metadata);
                metadata.response_code = ResponseCode::FormErr;
                return emit(out, &metadata, &[], None, None);
            }
        };
        if message.metadata.message_type != MessageType::Query {
            // Never answer a response: no loops between servers.
            return false;
        }
        self.metrics
            .query(message.queries.first().map(|q| q.query_type()), true);
        // The question is echoed only when there is exactly one (RFC 9619): a packet with a
        // hundred questions must not come back a hundred questions long.
        let echoed: &[hickory_proto::op::Query] = match &message.queries[..] {
            [_] => &message.queries,
            _ => &[],
        };
        if verdict == Verdict::Drop {
            self.metrics.rate_limited(false);
            return false;
        }
        if verdict == Verdict::Slip {
            // Empty and truncated: a real client retries over TCP.
            self.metrics.rate_limited(true);
            let mut metadata = Metadata::response_from_request(&message.metadata);
            metadata.truncation = true;
            return emit(out, &metadata, echoed, None, None);
        }
        let question = match &message.queries[..] {
            [query] => Some(Question {
                name: LowerName::new(query.name()),
                qtype: query.query_type(),
                class: query.query_class(),
            }),
            _ => None,
        };
        let mut reply = self.reply(&Query {
            metadata: &message.metadata,
            question,
            edns: message.edns.as_ref(),
            source,
        });
        self.metrics.response(reply.metadata.response_code);
        // Never more than the client asked for, nor more than the size that avoids
        // fragmentation: no amplification beyond what the question invites.
        let limit = usize::from(message.max_payload().clamp(512, OUR_MAX_PAYLOAD));
        let fitted = emit(
            out,
            &reply.metadata,
            echoed,
            reply.lookup.as_ref(),
            reply.edns.as_ref(),
        ) && out.len() <= limit;
        if !fitted {
            // No records at all rather than some: a client never mistakes a partial RRset
            // for the whole; it retries over TCP.
            debug!(%source, size = out.len(), "truncating UDP answer");
            out.clear();
            reply.metadata.truncation = true;
            return emit(out, &reply.metadata, echoed, None, reply.edns.as_ref());
        }
        true
    }

    /// The reply to one query: response code, records and our OPT record.
    fn reply(&self, query: &Query<'_>) -> Reply {
        let ecs = query
            .edns
            .and_then(|edns| match edns.option(EdnsCode::Subnet) {
                Some(EdnsOption::Subnet(subnet)) => Some(*subnet),
                _ => None,
            });

        let (rcode, lookup) = self.decide(query, ecs);

        // Our OPT record, only when the client sent one (RFC 6891).
        let edns = query.edns.map(|_| {
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

        let mut metadata = Metadata::response_from_request(query.metadata);
        metadata.response_code = rcode;
        metadata.authoritative = lookup.is_some();
        Reply {
            metadata,
            lookup,
            edns,
        }
    }

    /// The response code, and the records when the question is ours to answer.
    fn decide(
        &self,
        query: &Query<'_>,
        ecs: Option<ClientSubnet>,
    ) -> (ResponseCode, Option<Lookup>) {
        if query.metadata.op_code != OpCode::Query {
            return (ResponseCode::NotImp, None);
        }
        let Some(question) = &query.question else {
            return (ResponseCode::FormErr, None);
        };
        if matches!(question.qtype, RecordType::AXFR | RecordType::IXFR) {
            return (ResponseCode::Refused, None);
        }
        if !matches!(question.class, DNSClass::IN | DNSClass::ANY) {
            return (ResponseCode::Refused, None);
        }
        if !self.zone.origin.zone_of(&question.name) {
            return (ResponseCode::Refused, None);
        }
        let located = match ecs {
            Some(ecs) if ecs.source_prefix() > 0 => self.locate(ecs.addr(), ecs.source_prefix()),
            _ => self.locate(query.source, 128),
        };
        let lookup = self.lookup(&question.name, question.qtype, located);
        (lookup.rcode, Some(lookup))
    }
}
