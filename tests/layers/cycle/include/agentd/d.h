int d_fn(void);
