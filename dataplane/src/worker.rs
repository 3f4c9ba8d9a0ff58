//! Workers. To be written.
