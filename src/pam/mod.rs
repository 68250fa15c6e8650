//! PAM glue (the only unsafe code).
