long clock_now(void);
