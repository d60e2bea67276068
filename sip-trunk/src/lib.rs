//! sip-trunk
pub mod auth;
pub mod resolve;
