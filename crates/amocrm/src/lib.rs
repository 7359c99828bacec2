//! amoCRM / Kommo API v4 client (being built).
