//! A stand-in amoCRM API v4 server (being built).
