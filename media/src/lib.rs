//! media
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod bridge;
pub mod codec;
pub mod dtmf;
pub mod jitter;
pub mod rtp;
pub mod rtp_leg;
pub mod sdp;
pub mod transcode;
