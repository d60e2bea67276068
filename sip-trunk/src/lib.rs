//! sip-trunk
pub mod auth;
pub mod message;
pub mod registration;
pub mod resolve;
