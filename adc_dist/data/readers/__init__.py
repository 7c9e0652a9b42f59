"""Readers: one small module per source format, each returning the canonical table
(:mod:`adc_dist.data.canonical`) from ``{path inside the dataset folder: local Path}``.

    amazon_mat   amazon4_cdtf/demo_amazon.mat      Book, Music, DVD, Video rating matrices
    lscd_mat     amazon4_lscd/amazon_data.mat      four unlabelled domains d1..d4
    triples      headerless "user<TAB>item<TAB>rating" files, one domain per file
                 (douban_gadtcdr, disencdr_amazon, cdrib_amazon)
    neucdcf      neucdcf_amazon_music_movie        "user item rating domain_index", global item ids
    recbole      RecBole atomic .inter files, one domain per file (amazon_books_movies_dense)
    table        users' own CSV / TSV / Parquet with user, item, domain[, rating] columns
"""
