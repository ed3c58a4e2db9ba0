int e_fn(void);
