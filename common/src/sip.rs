//! The SIP contract between the sip-proxy and SIP handler functions (`proto/sluice_sip.proto`):
//! the proxy POSTs an [`Event`] to `/function/<handler>` with this content type, the handler
//! answers with [`Actions`].

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

tonic::include_proto!("sluice.sip.v1");

/// The content type of both directions.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
