//! A Mango Office emulator (being built).
