enum vocab_level { VOCAB_LOW, VOCAB_HIGH };
