//! Table-driven example tests of the machine (filled below).
