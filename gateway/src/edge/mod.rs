//! The edge: what the gateway checks and decides about a client request before routing, so
//! that routing, plugins and the upstream all see one checked request (see issue 16 in the
//! README's security section): the path in its one canonical spelling ([`path`]).

pub mod path;
