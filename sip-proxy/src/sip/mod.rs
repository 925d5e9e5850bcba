//! SIP messages: parsing and framing ([`message`], on ezk-sip-types) and the messages the
//! proxy writes ([`build`]).

pub mod build;
pub mod message;

#[cfg(test)]
mod tests;
