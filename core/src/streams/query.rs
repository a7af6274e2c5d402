//! `mountctl query`: sstream-query's traversal and output.
