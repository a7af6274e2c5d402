//! Item filters as sstream-query parses and applies them.
