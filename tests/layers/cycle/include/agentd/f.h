int f_fn(void);
