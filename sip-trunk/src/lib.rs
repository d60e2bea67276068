//! sip-trunk
pub mod auth;
pub mod dialog;
pub mod message;
pub mod registration;
pub mod resolve;
pub mod transaction;
pub mod ua;
