//! Charts (placeholder replaced below).
