int req_parse(const char *s);
