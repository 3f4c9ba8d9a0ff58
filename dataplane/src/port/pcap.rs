//! pcap backend. To be written.
