"""Records to bronze rows on Spark: the flattening, the ordering rule, the tables' columns."""
