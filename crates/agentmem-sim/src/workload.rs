//! Agent workload generator (placeholder replaced below).
