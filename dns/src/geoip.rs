//! Client locations from a MaxMind-format database (GeoIP2 / GeoLite2 City, or any database
//! whose records carry `location.latitude` and `location.longitude`), for clients the
//! configured network table does not cover.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

use crate::config::DnsError;

#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    location: Option<Coordinates>,
}

#[derive(Deserialize)]
struct Coordinates {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

pub(crate) struct GeoIpDatabase {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl GeoIpDatabase {
    pub(crate) fn open(path: &Path) -> Result<Self, DnsError> {
        let reader =
            maxminddb::Reader::open_readfile(path).map_err(|e| DnsError::BadGeoIpDatabase {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self { reader })
    }

    /// The database's network holding `addr`, and its coordinates, if it has them.
    pub(crate) fn locate(&self, addr: IpAddr) -> Option<(IpNet, [f64; 2])> {
        let result = self.reader.lookup(addr).ok()?;
        let record: Record = result.decode().ok()??;
        let location = record.location?;
        let coordinates = [location.latitude?, location.longitude?];
        let network = result.network().ok()?;
        let network = IpNet::new(network.ip(), network.prefix()).ok()?.trunc();
        Some((network, coordinates))
    }
}
