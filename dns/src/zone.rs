//! The zone's data: its apex (SOA, NS), the names answered dynamically, the static records
//! from the config and an optional master file, checked for consistency once at start. Which
//! edge a dynamic name answers with is `geo`'s business; the wire is `server`'s.

use std::collections::{HashMap, HashSet};

use hickory_proto::rr::RecordSet;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

use crate::config::{DnsConfig, DnsError};

pub(crate) struct Zone {
    pub(crate) origin: LowerName,
    pub(crate) origin_name: Name,
    pub(crate) soa: Record,
    pub(crate) dynamic: HashSet<LowerName>,
    /// Static records by owner name (SOA, NS, glue and configured records).
    pub(crate) records: HashMap<LowerName, Vec<Record>>,
    /// Every name that exists: owners, dynamic names and the empty non-terminals above them.
    pub(crate) existing: HashSet<LowerName>,
    pub(crate) static_ttl: u32,
}

impl Zone {
    pub(crate) fn new(config: &DnsConfig) -> Result<Self, DnsError> {
        let origin_name = Name::from_ascii(config.zone.trim())
            .map_err(|e| DnsError::BadZone {
                zone: config.zone.clone(),
                reason: e.to_string(),
            })?
            .to_lowercase();
        if !origin_name.is_fqdn() || origin_name.is_root() {
            return Err(DnsError::BadZone {
                zone: config.zone.clone(),
                reason: "must be an absolute name ending in '.', not the root".to_owned(),
            });
        }

        let origin = LowerName::new(&origin_name);
        let static_ttl = config.static_ttl_secs;
        let ns_name = Name::from_ascii("ns1")
            .and_then(|n| n.append_domain(&origin_name))
            .map_err(|e| DnsError::BadZone {
                zone: config.zone.clone(),
                reason: e.to_string(),
            })?;
        let hostmaster = Name::from_ascii("hostmaster")
            .and_then(|n| n.append_domain(&origin_name))
            .map_err(|e| DnsError::BadZone {
                zone: config.zone.clone(),
                reason: e.to_string(),
            })?;
        let default_ns = ns_name.clone();
        let soa = Record::from_rdata(
            origin_name.clone(),
            static_ttl,
            RData::SOA(SOA::new(
                ns_name.clone(),
                hostmaster,
                1,
                3600,
                600,
                86400,
                config.dynamic_ttl_secs.min(static_ttl),
            )),
        );
        let mut records: HashMap<LowerName, Vec<Record>> = HashMap::new();
        records.entry(origin.clone()).or_default().extend([
            soa.clone(),
            Record::from_rdata(
                origin_name.clone(),
                static_ttl,
                RData::NS(NS(ns_name.clone())),
            ),
        ]);
        records
            .entry(LowerName::new(&ns_name))
            .or_default()
            .push(Record::from_rdata(
                ns_name,
                static_ttl,
                RData::A(A::new(127, 0, 0, 1)),
            ));

        let mut dynamic = HashSet::new();
        dynamic.insert(origin.clone());
        for name in &config.service_names {
            let parsed =
                parse_name(name, &origin_name).map_err(|reason| DnsError::BadServiceName {
                    name: name.clone(),
                    reason,
                })?;
            if !origin_name.zone_of(&parsed) {
                return Err(DnsError::BadServiceName {
                    name: name.clone(),
                    reason: format!("{parsed} is outside the zone {origin_name}"),
                });
            }
            dynamic.insert(LowerName::new(&parsed));
        }

        for rec in &config.records {
            let bad = |reason: String| DnsError::BadRecord {
                name: rec.name.clone(),
                kind: rec.kind.clone(),
                value: rec.value.clone(),
                reason,
            };
            let owner = parse_name(&rec.name, &origin_name).map_err(&bad)?;
            let kind = rec.kind.trim().to_ascii_uppercase();
            let rdata = match kind.as_str() {
                "A" => RData::A(A(rec
                    .value
                    .trim()
                    .parse()
                    .map_err(|e| bad(format!("not an IPv4 address: {e}")))?)),
                "AAAA" => RData::AAAA(AAAA(
                    rec.value
                        .trim()
                        .parse()
                        .map_err(|e| bad(format!("not an IPv6 address: {e}")))?,
                )),
                "CNAME" => RData::CNAME(CNAME(parse_name(&rec.value, &origin_name).map_err(&bad)?)),
                "TXT" => RData::TXT(TXT::new(character_strings(&rec.value))),
                other => {
                    return Err(bad(format!(
                        "unsupported kind {other:?} (use A, AAAA, CNAME or TXT)"
                    )));
                }
            };
            let ttl = rec.ttl_secs.unwrap_or(static_ttl);
            insert_static(
                &mut records,
                &dynamic,
                &origin_name,
                Record::from_rdata(owner, ttl, rdata),
            )
            .map_err(bad)?;
        }

        let mut soa = soa;
        if let Some(path) = &config.zone_file {
            let bad = |reason: String| DnsError::BadZoneFile {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            let (file_origin, sets) =
                parse_zone_file(&text, path, &origin_name, static_ttl).map_err(bad)?;
            if file_origin.to_lowercase() != origin_name {
                return Err(bad(format!(
                    "its origin {file_origin} is not the zone {origin_name}"
                )));
            }
            let file_has_apex_ns = sets.values().any(|set: &RecordSet| {
                set.record_type() == RecordType::NS && set.name().to_lowercase() == origin_name
            });
            for set in sets.values() {
                for record in set.records_without_rrsigs() {
                    let mut record = record.clone();
                    record.name = record.name.to_lowercase();
                    let at_apex = record.name == origin_name;
                    match record.record_type() {
                        RecordType::SOA if at_apex => {
                            let apex = records.entry(origin.clone()).or_default();
                            apex.retain(|r| r.record_type() != RecordType::SOA);
                            apex.push(record.clone());
                            soa = record;
                        }
                        RecordType::SOA => {
                            return Err(bad(format!(
                                "an SOA record at {} is not the apex",
                                record.name
                            )));
                        }
                        _ => insert_static(&mut records, &dynamic, &origin_name, record)
                            .map_err(&bad)?,
                    }
                }
            }
            if file_has_apex_ns {
                // Keep only the file's NS records at the apex.
                let apex = records.entry(origin.clone()).or_default();
                apex.retain(|r| {
                    !(r.record_type() == RecordType::NS
                        && matches!(&r.data, RData::NS(NS(target)) if *target == default_ns))
                });
            }
        }

        let mut existing = HashSet::new();
        for name in records.keys().chain(dynamic.iter()) {
            let mut n = name.clone();
            loop {
                let at_origin = n == origin;
                existing.insert(n.clone());
                if at_origin || n.is_root() {
                    break;
                }
                n = n.base_name();
            }
        }

        Ok(Self {
            origin,
            origin_name,
            soa,
            dynamic,
            records,
            existing,
            static_ttl,
        })
    }
}

fn parse_name(name: &str, origin: &Name) -> Result<Name, String> {
    let name = name.trim();
    let parsed = if name == "@" || name.is_empty() {
        origin.clone()
    } else if name.ends_with('.') {
        Name::from_ascii(name).map_err(|e| e.to_string())?
    } else {
        Name::from_ascii(name)
            .and_then(|n| n.append_domain(origin))
            .map_err(|e| e.to_string())?
    };
    Ok(parsed.to_lowercase())
}

/// Parses a master file; records without a TTL get `default_ttl` (a `$TTL` line overrides
/// it). Errors name the line when it can be found.
fn parse_zone_file(
    text: &str,
    path: &std::path::Path,
    origin: &Name,
    default_ttl: u32,
) -> Result<
    (
        Name,
        std::collections::BTreeMap<hickory_proto::rr::RrKey, RecordSet>,
    ),
    String,
> {
    let parse = |body: &str| {
        Parser::new(
            format!("$TTL {default_ttl}\n{body}"),
            Some(path.to_path_buf()),
            Some(origin.clone()),
        )
        .parse()
    };
    parse(text).map_err(|error| {
        let message = error.to_string();
        // The parser does not say where: the first prefix of the file that fails the same way
        // ends on the culprit line.
        let lines: Vec<&str> = text.lines().collect();
        let line = (1..=lines.len()).find(|&n| {
            parse(&lines[..n].join("\n"))
                .err()
                .is_some_and(|e| e.to_string() == message)
        });
        match line {
            Some(n) => format!("line {n}: {message} (in {:?})", lines[n - 1].trim()),
            None => message,
        }
    })
}

/// Splits text into DNS character-strings of at most 255 bytes, on character boundaries.
fn character_strings(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if cur.len() + ch.len_utf8() > 255 {
            parts.push(std::mem::take(&mut cur));
        }
        cur.push(ch);
    }
    parts.push(cur);
    parts
}

/// Adds one static record, refusing what would make the zone inconsistent: names outside it,
/// a CNAME beside other data, static addresses on a dynamic name.
fn insert_static(
    records: &mut HashMap<LowerName, Vec<Record>>,
    dynamic: &HashSet<LowerName>,
    origin: &Name,
    record: Record,
) -> Result<(), String> {
    let owner = &record.name;
    if !origin.zone_of(owner) {
        return Err(format!("{owner} is outside the zone {origin}"));
    }
    let lower = LowerName::new(owner);
    let kind = record.record_type();
    let is_dynamic = dynamic.contains(&lower);
    let existing = records.get(&lower).map(Vec::as_slice).unwrap_or_default();
    if kind == RecordType::CNAME && (is_dynamic || !existing.is_empty()) {
        return Err(
            "a CNAME cannot share its name with other records or a dynamic name".to_owned(),
        );
    }
    if existing
        .iter()
        .any(|r| r.record_type() == RecordType::CNAME)
    {
        return Err("the name already has a CNAME".to_owned());
    }
    if is_dynamic && matches!(kind, RecordType::A | RecordType::AAAA) {
        return Err(format!(
            "{owner} is answered dynamically; it cannot have static {kind} records"
        ));
    }
    records.entry(lower).or_default().push(record);
    Ok(())
}
