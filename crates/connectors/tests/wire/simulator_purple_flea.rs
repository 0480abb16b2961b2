//! Tests against the Purple Flea simulator (written below).
