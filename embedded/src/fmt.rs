//! Logging macros: `defmt` with the `defmt` feature, nothing otherwise (the arguments are
//! still evaluated by reference, so no "unused" warnings depend on the feature).

#![allow(unused_macros)]

macro_rules! log_at {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(not(feature = "defmt"))]
        let _ = ($(&$x,)*);
    }};
}

macro_rules! trace {
    ($($t:tt)*) => { log_at!(trace, $($t)*) };
}

macro_rules! debug {
    ($($t:tt)*) => { log_at!(debug, $($t)*) };
}

macro_rules! info {
    ($($t:tt)*) => { log_at!(info, $($t)*) };
}

macro_rules! warn {
    ($($t:tt)*) => { log_at!(warn, $($t)*) };
}
