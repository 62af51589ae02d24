//! One server connection: connect, authenticate, ParameterStatus, cancel keys.
