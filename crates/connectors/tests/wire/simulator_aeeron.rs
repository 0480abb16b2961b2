//! Tests against the Aeeron simulator (written below).
