//! The store on disk (DESIGN §2).
