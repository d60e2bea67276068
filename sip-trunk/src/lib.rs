//! sip-trunk
