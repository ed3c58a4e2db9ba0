int b_helper(void);
