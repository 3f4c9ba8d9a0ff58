//! AF_PACKET backend (TPACKET_V3). To be written.
