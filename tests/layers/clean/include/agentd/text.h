int text_len(const char *s);
