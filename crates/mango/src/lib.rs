//! Mango Office VPBX wire format (filled in next).
