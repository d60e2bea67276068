//! dialplans
