"""What operators and analysts read without a JVM: SQL over the tables, status, the backlog."""
